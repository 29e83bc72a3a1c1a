//! A database that belongs to one test: a fresh SQLite file, or a fresh database on the
//! PostgreSQL server named by [`DATABASE_URL_VAR`].

/// Environment variable naming a PostgreSQL server to test against instead of SQLite.
pub const DATABASE_URL_VAR: &str = "CONTACTSD_TEST_DATABASE_URL";

/// A database that belongs to one test (and to the replicas of its server).
pub struct TestDatabase {
    pub url: String,
    /// Keeps the SQLite file's folder alive as long as the test runs.
    _dir: Option<tempfile::TempDir>,
}

impl TestDatabase {
    /// A brand-new, empty database: SQLite in a temporary folder by default, or a fresh
    /// database on the PostgreSQL server named by `CONTACTSD_TEST_DATABASE_URL`.
    pub async fn fresh() -> TestDatabase {
        match std::env::var(DATABASE_URL_VAR) {
            Ok(url) if !url.trim().is_empty() => TestDatabase::fresh_postgres(url.trim()).await,
            _ => TestDatabase::fresh_sqlite(),
        }
    }

    fn fresh_sqlite() -> TestDatabase {
        let dir = tempfile::tempdir().expect("could not create a temporary folder for SQLite");
        let url = format!("sqlite://{}/test.db", dir.path().display());
        TestDatabase {
            url,
            _dir: Some(dir),
        }
    }

    /// Create `contactsd_test_<uuid>` on the server of `server_url` and point at it. The
    /// databases are left behind for inspection; the CI's throwaway cluster removes them.
    async fn fresh_postgres(server_url: &str) -> TestDatabase {
        use sqlx::Connection;
        let name = format!("contactsd_test_{}", uuid::Uuid::new_v4().simple());
        let mut admin = sqlx::postgres::PgConnection::connect(server_url)
            .await
            .unwrap_or_else(|error| {
                panic!("{DATABASE_URL_VAR}: cannot connect to {server_url}: {error}")
            });
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE \"{name}\"")))
            .execute(&mut admin)
            .await
            .unwrap_or_else(|error| panic!("cannot create test database {name}: {error}"));
        let _ = admin.close().await;
        TestDatabase {
            url: with_database_name(server_url, &name),
            _dir: None,
        }
    }
}

/// `postgres://user@host:5432/postgres?sslmode=disable` with its database replaced by `name`.
fn with_database_name(url: &str, name: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((base, query)) => (base, Some(query)),
        None => (url, None),
    };
    let authority = base.find("://").map_or(0, |at| at + 3);
    let base = match base[authority..].find('/') {
        Some(slash) => &base[..authority + slash],
        None => base,
    };
    match query {
        Some(query) => format!("{base}/{name}?{query}"),
        None => format!("{base}/{name}"),
    }
}

#[test]
fn database_names_are_replaced_in_postgres_urls() {
    assert_eq!(
        with_database_name("postgres://u:p@localhost:5432/postgres", "t1"),
        "postgres://u:p@localhost:5432/t1"
    );
    assert_eq!(
        with_database_name("postgres://localhost", "t1"),
        "postgres://localhost/t1"
    );
    assert_eq!(
        with_database_name("postgresql://h/db?sslmode=disable", "t1"),
        "postgresql://h/t1?sslmode=disable"
    );
}
