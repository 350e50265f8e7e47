//! Embedded migrations, one folder per backend.
//!
//! The SQL differs only where the dialects do (`BIGSERIAL`, SQLite's rowid alias, MariaDB's
//! `AUTO_INCREMENT`; partial indexes, which MariaDB lacks); all three must produce the tables
//! `schema.rs` describes.

use diesel_migrations::{EmbeddedMigrations, MigrationHarness, embed_migrations};

use crate::connection::DbConnection;
use crate::error::PersistenceError;

pub const POSTGRES: EmbeddedMigrations = embed_migrations!("migrations/postgres");
pub const SQLITE: EmbeddedMigrations = embed_migrations!("migrations/sqlite");
pub const MYSQL: EmbeddedMigrations = embed_migrations!("migrations/mysql");

/// Applies every pending migration; returns the versions applied, oldest first.
pub fn run_pending(conn: &mut DbConnection) -> Result<Vec<String>, PersistenceError> {
    let applied = match conn {
        DbConnection::Postgres(pg) => pg.run_pending_migrations(POSTGRES),
        DbConnection::Sqlite(sqlite) => sqlite.run_pending_migrations(SQLITE),
        DbConnection::Mysql(mysql) => mysql.run_pending_migrations(MYSQL),
    }
    .map_err(|error| PersistenceError::Migration(error.to_string()))?;
    Ok(applied
        .into_iter()
        .map(|version| version.to_string())
        .collect())
}
