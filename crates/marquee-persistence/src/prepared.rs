//! [`update_where`]: an `UPDATE` the connection prepares once and reuses.
//!
//! diesel keeps a cache of prepared statements per connection, but only for statements it
//! can prove have one SQL text: every `SELECT` it builds, and no `UPDATE`, no `INSERT` of a
//! derived `Insertable` (any of its values may be written `DEFAULT`) and no `sql_query`.
//! Each of those goes to the database as an unnamed statement, which PostgreSQL parses,
//! analyses and plans again on every call. A hold sent three of them and a payment six.
//!
//! What was measured (pgbench, PostgreSQL 15, 8 clients on this repository's 2-core machine,
//! 10 s each, `loadtest/pgbench/hold-writes.sql`): the transaction of a hold's writes (an
//! advisory lock and two `UPDATE`s of a seat) ran at 4,110 to 4,326 transactions a second
//! with named prepared statements (`-M prepared`) and at about 3,070 with unnamed ones
//! (`-M extended`, what diesel sends). docs/performance.md has the commands.
//!
//! So the booking's writes are written in the forms diesel does keep: `UPDATE`s through
//! [`update_where`], which builds the statement from diesel's own pieces (columns,
//! changesets, expressions), none of which forbids caching (diesel's `UpdateStatement`
//! forbids it for every update, because a changeset with optional columns can give one
//! statement many texts; these changesets have none); `INSERT`s with their values column by
//! column (`booking.rs`); PostgreSQL's function calls as statement types of their own
//! (`booking.rs`, `pg_function_call!`). The cache keys an `update_where` statement by its SQL
//! text and bind types (diesel's `StatementCacheKey::Sql`), so two statements that differ
//! share nothing. It must not be given one whose text varies with its values (an `IN` list
//! on SQLite or MariaDB): each variant would take a place in the cache.

use diesel::backend::Backend;
use diesel::query_builder::{AsChangeset, AstPass, QueryFragment, QueryId};
use diesel::query_source::{QuerySource, Table};
use diesel::{QueryResult, RunQueryDsl};

/// `UPDATE {table} SET {changes} WHERE {predicate}`, prepared once per connection (see the
/// module's documentation). Run it with `execute`; it answers the number of rows updated.
pub(crate) fn update_where<T, C, P>(
    table: T,
    changes: C,
    predicate: P,
) -> UpdateWhere<<T as QuerySource>::FromClause, C::Changeset, P>
where
    T: Table,
    C: AsChangeset<Target = T>,
{
    UpdateWhere {
        table: table.from_clause(),
        changes: changes.as_changeset(),
        predicate,
    }
}

/// What [`update_where`] builds: the table as it is written, the changes, the predicate.
#[derive(Debug, Clone, Copy)]
pub(crate) struct UpdateWhere<T, C, P> {
    table: T,
    changes: C,
    predicate: P,
}

impl<T, C, P, DB> QueryFragment<DB> for UpdateWhere<T, C, P>
where
    DB: Backend,
    T: QueryFragment<DB>,
    C: QueryFragment<DB>,
    P: QueryFragment<DB>,
{
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, DB>) -> QueryResult<()> {
        out.push_sql("UPDATE ");
        self.table.walk_ast(out.reborrow())?;
        out.push_sql(" SET ");
        self.changes.walk_ast(out.reborrow())?;
        out.push_sql(" WHERE ");
        self.predicate.walk_ast(out.reborrow())
    }
}

// No static id: the cache keys the statement by its SQL text and bind types.
impl<T, C, P> QueryId for UpdateWhere<T, C, P> {
    type QueryId = ();

    const HAS_STATIC_QUERY_ID: bool = false;
}

impl<T, C, P, Conn> RunQueryDsl<Conn> for UpdateWhere<T, C, P> {}
