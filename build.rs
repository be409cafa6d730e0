//! `sqlx::migrate!` embeds `migrations/` when the crate compiles; without this, a migration
//! added since the last build is left out of an incremental build, silently.
fn main() {
    println!("cargo:rerun-if-changed=migrations");
}
