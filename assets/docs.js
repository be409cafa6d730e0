// Herald's API page: Swagger UI on Herald's own /openapi.json. "Authorize" takes an API key
// (kept in this page only: persistAuthorization is off), "Try it out" sends real requests
// to this Herald.
window.addEventListener("load", function () {
  window.ui = SwaggerUIBundle({
    url: "/openapi.json",
    dom_id: "#swagger-ui",
    deepLinking: true,
    tryItOutEnabled: true,
    persistAuthorization: false,
    presets: [SwaggerUIBundle.presets.apis],
    layout: "BaseLayout",
  });
});
