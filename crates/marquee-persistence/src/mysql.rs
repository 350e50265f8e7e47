//! What MariaDB (and MySQL) lack that the other backends have, written once: `RETURNING`
//! (an insert reads its row back by `LAST_INSERT_ID()`), and an insert that skips a
//! duplicate and says whether it did (a plain insert whose duplicate-key error is caught:
//! InnoDB undoes the failed statement alone, and the transaction goes on).
//!
//! `ON DUPLICATE KEY UPDATE` is no such insert here: diesel opens MariaDB connections with
//! `CLIENT_FOUND_ROWS`, with which a duplicate counts as one affected row, as an insert does.

use diesel::MysqlConnection;
use diesel::prelude::*;
use diesel::result::{DatabaseErrorKind, Error};

diesel::define_sql_function! {
    /// The first `AUTO_INCREMENT` value the connection's last insert generated.
    #[sql_name = "LAST_INSERT_ID"]
    fn last_insert_id() -> diesel::sql_types::Unsigned<diesel::sql_types::BigInt>;
}

/// The id the connection's last insert generated.
pub(crate) fn inserted_id(c: &mut MysqlConnection) -> QueryResult<i64> {
    let id: u64 = diesel::select(last_insert_id()).get_result(c)?;
    i64::try_from(id).map_err(|error| Error::DeserializationError(Box::new(error)))
}

/// `Ok(false)` for an insert refused as a duplicate, `Ok(true)` for one that inserted.
pub(crate) fn inserted(result: QueryResult<usize>) -> QueryResult<bool> {
    match result {
        Ok(_) => Ok(true),
        Err(Error::DatabaseError(DatabaseErrorKind::UniqueViolation, _)) => Ok(false),
        Err(error) => Err(error),
    }
}

/// Ids per `IN (...)` list.
pub(crate) const IDS_PER_STATEMENT: usize = 1_000;
