//! [`Prepared`]: a write statement the connection prepares once and reuses.
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
//! Two ways to a statement the connection keeps:
//!
//! - [`update_where`] writes `UPDATE {table} SET {changes} WHERE {predicate}` from diesel's
//!   own pieces (columns, changesets, expressions), none of which forbids caching; diesel's
//!   `UpdateStatement` forbids it for every update, because a changeset with optional
//!   columns can give one statement many texts. These changesets have no optional columns.
//! - [`Prepared`] wraps a statement that returns rows (`get_result`, `load`) and tells the
//!   cache it may keep it: an `INSERT ... RETURNING` of a struct, which diesel refuses to
//!   cache since any of its columns may be written `DEFAULT`. (The wrapper cannot reach
//!   `execute`: diesel runs it through a reference, whose caching check is diesel's own.)
//!
//! Either way the cache keys the statement by its SQL text and bind types (diesel's
//! `StatementCacheKey::Sql`), so two statements that differ share nothing. Neither must be
//! given a statement whose text varies with its values (an `IN` list on SQLite or MariaDB,
//! an optional column): each variant would take a place in the cache.

use diesel::backend::Backend;
use diesel::query_builder::{AsChangeset, AstPass, Query, QueryFragment, QueryId};
use diesel::query_source::{QuerySource, Table};
use diesel::{QueryResult, RunQueryDsl};

/// A statement the connection prepares once and reuses (see the module's documentation).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Prepared<Q>(pub(crate) Q);

/// Wraps a statement in [`Prepared`].
pub(crate) trait Prepare: Sized {
    /// This statement, prepared once per connection and reused.
    fn prepared(self) -> Prepared<Self> {
        Prepared(self)
    }
}

impl<Q> Prepare for Q {}

impl<Q, DB> QueryFragment<DB> for Prepared<Q>
where
    Q: QueryFragment<DB>,
    DB: Backend,
{
    fn walk_ast<'b>(&'b self, pass: AstPass<'_, 'b, DB>) -> QueryResult<()> {
        self.0.walk_ast(pass)
    }

    // The SQL text of a wrapped statement does not depend on its values, so the statement
    // cache may keep it under that text.
    fn is_safe_to_cache_prepared(&self, _backend: &DB) -> QueryResult<bool> {
        Ok(true)
    }
}

// No static id: the cache keys the statement by its SQL text and bind types.
impl<Q> QueryId for Prepared<Q> {
    type QueryId = ();

    const HAS_STATIC_QUERY_ID: bool = false;
}

impl<Q: Query> Query for Prepared<Q> {
    type SqlType = Q::SqlType;
}

impl<Q, Conn> RunQueryDsl<Conn> for Prepared<Q> {}

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
