//! Both dialects' migrations build the same schema: the same migrations (versions and
//! names), tables, columns (type and NOT NULL), named indexes and triggers. A migration
//! added to one dialect and not the other, or a column that differs, fails here.
//!
//! PostgreSQL is the machine's, at `HERALD_TEST_POSTGRES` (default
//! `postgres://root@127.0.0.1:5432/postgres`, which `.ci/run` starts when it is down); the
//! test creates a database of its own and drops it.

use sqlx::{Connection, Row};
use std::collections::BTreeMap;

static SQLITE: sqlx::migrate::Migrator = sqlx::migrate!("migrations/sqlite");
pub(crate) static POSTGRES: sqlx::migrate::Migrator = sqlx::migrate!("migrations/postgres");

/// Per table: column → (type, NOT NULL); plus the named indexes and the triggers.
#[derive(Debug, Default, PartialEq, Eq)]
struct Schema {
    tables: BTreeMap<String, BTreeMap<String, (String, bool)>>,
    indexes: Vec<String>,
    triggers: Vec<String>,
}

fn postgres_url() -> String {
    std::env::var("HERALD_TEST_POSTGRES")
        .unwrap_or_else(|_| "postgres://root@127.0.0.1:5432/postgres".to_owned())
}

/// SQLite's declared types as the PostgreSQL migrations spell them.
fn sqlite_type(declared: &str) -> String {
    match declared.to_ascii_uppercase().as_str() {
        "INTEGER" => "bigint",
        "TEXT" => "text",
        "BLOB" => "bytea",
        "REAL" => "double precision",
        other => return format!("unmapped SQLite type {other}"),
    }
    .to_owned()
}

async fn sqlite_schema() -> Schema {
    let dir = crate::helpers::test_dir();
    let url = format!(
        "sqlite://{}?mode=rwc",
        dir.path().join("parity.db").display()
    );
    let mut conn = sqlx::SqliteConnection::connect(&url)
        .await
        .expect("SQLite opens");
    SQLITE
        .run(&mut conn)
        .await
        .expect("the SQLite migrations run");
    let mut schema = Schema::default();
    let names: Vec<(String, String)> = sqlx::query_as(
        "SELECT type, name FROM sqlite_schema WHERE name NOT LIKE 'sqlite_%' \
         AND name NOT LIKE '_sqlx%' AND type IN ('table', 'index', 'trigger') ORDER BY name",
    )
    .fetch_all(&mut conn)
    .await
    .expect("the schema");
    for (kind, name) in names {
        match kind.as_str() {
            "index" => schema.indexes.push(name),
            "trigger" => schema.triggers.push(name),
            _ => {
                let columns = sqlx::query(sqlx::AssertSqlSafe(format!(
                    "PRAGMA table_info(\"{name}\")"
                )))
                .fetch_all(&mut conn)
                .await
                .expect("table_info");
                let columns = columns
                    .iter()
                    .map(|c| {
                        let declared: String = c.get("type");
                        // A primary key column is NOT NULL in effect (SQLite's rowid tables
                        // would take a NULL text key only through a historical quirk).
                        let not_null = c.get::<i64, _>("notnull") == 1 || c.get::<i64, _>("pk") > 0;
                        (c.get("name"), (sqlite_type(&declared), not_null))
                    })
                    .collect();
                schema.tables.insert(name, columns);
            }
        }
    }
    schema
}

async fn postgres_schema(conn: &mut sqlx::PgConnection) -> Schema {
    let mut schema = Schema::default();
    let columns = sqlx::query(
        "SELECT table_name::text AS t, column_name::text AS c, data_type::text AS ty, \
         is_nullable::text AS n FROM information_schema.columns WHERE table_schema = 'public' \
         AND table_name NOT LIKE '_sqlx%'",
    )
    .fetch_all(&mut *conn)
    .await
    .expect("the columns");
    for row in columns {
        schema.tables.entry(row.get("t")).or_default().insert(
            row.get("c"),
            (row.get("ty"), row.get::<String, _>("n") == "NO"),
        );
    }
    // Indexes a constraint created carry the engine's own names on both sides; only the
    // ones the migrations named are compared.
    schema.indexes = sqlx::query_scalar(
        "SELECT indexname::text FROM pg_indexes WHERE schemaname = 'public' \
         AND indexname NOT IN (SELECT conname FROM pg_constraint) ORDER BY indexname",
    )
    .fetch_all(&mut *conn)
    .await
    .expect("the indexes");
    schema.triggers = sqlx::query_scalar(
        "SELECT DISTINCT trigger_name::text FROM information_schema.triggers \
         WHERE trigger_schema = 'public' ORDER BY 1",
    )
    .fetch_all(&mut *conn)
    .await
    .expect("the triggers");
    schema
}

#[tokio::test]
async fn both_dialects_migrate_to_the_same_schema() {
    // Arrange: a database of this test's own.
    let mut admin = sqlx::PgConnection::connect(&postgres_url())
        .await
        .expect("PostgreSQL answers at HERALD_TEST_POSTGRES (.ci/run starts it)");
    let name = format!(
        "herald_parity_{}",
        ulid::Ulid::new().to_string().to_lowercase()
    );
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&mut admin)
        .await
        .expect("a test database");
    let mut url = url::Url::parse(&postgres_url()).expect("a URL");
    url.set_path(&name);
    let mut conn = sqlx::PgConnection::connect(url.as_str())
        .await
        .expect("the test database opens");

    // Act
    let migrated = POSTGRES.run(&mut conn).await;
    let postgres = postgres_schema(&mut conn).await;
    conn.close().await.expect("closes");
    sqlx::query(sqlx::AssertSqlSafe(format!("DROP DATABASE {name}")))
        .execute(&mut admin)
        .await
        .expect("the test database is dropped");
    migrated.expect("the PostgreSQL migrations run on an empty database");
    let sqlite = sqlite_schema().await;

    // Assert
    let versions = |m: &sqlx::migrate::Migrator| -> Vec<(i64, String)> {
        m.iter()
            .map(|m| (m.version, m.description.to_string()))
            .collect()
    };
    assert_eq!(
        versions(&SQLITE),
        versions(&POSTGRES),
        "the same migrations"
    );
    assert!(sqlite.tables.len() >= 20, "{:?}", sqlite.tables.keys());
    for (table, columns) in &sqlite.tables {
        assert_eq!(
            Some(columns),
            postgres.tables.get(table),
            "table {table}: SQLite's columns, then PostgreSQL's"
        );
    }
    assert_eq!(
        sqlite.tables.keys().collect::<Vec<_>>(),
        postgres.tables.keys().collect::<Vec<_>>()
    );
    assert_eq!(sqlite.indexes, postgres.indexes, "named indexes");
    assert_eq!(sqlite.triggers, postgres.triggers, "triggers");
}

/// The check sqlx's macros would give at compile time, done here for the PostgreSQL dialect
/// (SQLite's is a unit test beside its store): every query file prepares against a freshly
/// migrated database and opens with a comment saying what it does. A query the suite's
/// PostgreSQL pass never reaches (an abandoned upload's cleanup, say) is checked too.
#[tokio::test]
async fn every_postgres_query_file_prepares_against_the_migrated_schema() {
    let db = crate::postgres::TestDatabase::named("herald_queries").await;
    let mut conn = sqlx::PgConnection::connect(&db.url)
        .await
        .expect("the test database opens");
    POSTGRES
        .run(&mut conn)
        .await
        .expect("the PostgreSQL migrations run");

    let folder =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/store/postgres/queries");
    let mut checked = 0;
    let mut failures = Vec::new();
    for entry in std::fs::read_dir(&folder).expect("the query folder") {
        let path = entry.expect("an entry").path();
        let sql = std::fs::read_to_string(&path).expect("a query file");
        if !sql.starts_with("-- ") {
            failures.push(format!("{}: opens without a comment", path.display()));
        }
        if let Err(e) = sqlx::Executor::prepare(
            &mut conn,
            sqlx::SqlSafeStr::into_sql_str(sqlx::AssertSqlSafe(sql)),
        )
        .await
        {
            failures.push(format!("{}: {e}", path.display()));
        }
        checked += 1;
    }
    conn.close().await.expect("closes");
    db.drop_now().await;
    assert!(failures.is_empty(), "{failures:#?}");
    assert!(checked >= 100, "only {checked} query files found");
}
