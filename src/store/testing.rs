//! Registries for the tests of this crate: a throw-away PostgreSQL database on the test server
//! (`CERTGATE_TEST_POSTGRES`, by default the local one), dropped with its guard.

/// The PostgreSQL server the tests use: `CERTGATE_TEST_POSTGRES`, or the local one.
pub(crate) fn test_postgres() -> String {
    std::env::var("CERTGATE_TEST_POSTGRES")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned())
}

/// A throw-away database on the test server, dropped (with its connections) with the guard.
pub(crate) struct ScratchDatabase {
    admin: String,
    name: String,
    pub(crate) url: String,
}

impl ScratchDatabase {
    pub(crate) async fn create() -> Self {
        use sqlx::Connection as _;
        static COUNT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        sqlx::any::install_default_drivers();
        let admin = test_postgres();
        let mut random = [0u8; 4];
        aws_lc_rs::rand::fill(&mut random).unwrap();
        let name = format!(
            "certgate_test_{}_{}_{}",
            std::process::id(),
            COUNT.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
            crate::model::hex(&random)
        );
        let mut conn = sqlx::AnyConnection::connect(&admin).await.unwrap_or_else(|err| {
            panic!("no PostgreSQL at CERTGATE_TEST_POSTGRES={admin} (scripts/test.sh starts one): {err}")
        });
        sqlx::query(&format!("CREATE DATABASE {name}"))
            .execute(&mut conn)
            .await
            .unwrap();
        conn.close().await.unwrap();
        let mut url = url::Url::parse(&admin).unwrap();
        url.set_path(&name);
        Self {
            admin,
            name,
            url: url.to_string(),
        }
    }
}

impl Drop for ScratchDatabase {
    fn drop(&mut self) {
        let admin = self.admin.clone();
        let name = self.name.clone();
        // Drop runs inside the test's runtime, which cannot be blocked on: a thread of its own.
        let dropped = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async {
                use sqlx::Connection as _;
                let mut conn = sqlx::AnyConnection::connect(&admin).await.unwrap();
                sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                    .execute(&mut conn)
                    .await
                    .unwrap();
            });
        })
        .join();
        if dropped.is_err() && !std::thread::panicking() {
            panic!("could not drop the scratch database {}", self.name);
        }
    }
}
