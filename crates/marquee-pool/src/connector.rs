//! [`Connector`]: how the pool opens the caller's connections.

use std::fmt;
use std::marker::PhantomData;

use diesel::r2d2::R2D2Connection;

/// Opens connections for a [`Pool`](crate::Pool).
///
/// The pool is generic over the connection type: any diesel connection that r2d2 can manage
/// (`PgConnection`, `SqliteConnection`, `MysqlConnection`, or a `#[derive(MultiConnection)]`
/// enum over several). The connector decides how each connection is opened and set up:
/// session settings, `PRAGMA`s, driver timeouts. The pool decides when one is opened,
/// checked, retired and discarded.
///
/// [`UrlConnector`] opens a connection from a URL and nothing more. A connector of one's own:
///
/// ```
/// use diesel::connection::SimpleConnection;
/// use diesel::prelude::*;
/// use marquee_pool::Connector;
///
/// /// SQLite with foreign keys on, which SQLite leaves off by default.
/// #[derive(Debug)]
/// struct Sqlite(String);
///
/// impl Connector for Sqlite {
///     type Connection = SqliteConnection;
///
///     fn connect(&self) -> Result<SqliteConnection, diesel::ConnectionError> {
///         let mut conn = SqliteConnection::establish(&self.0)?;
///         conn.batch_execute("PRAGMA foreign_keys = ON;")
///             .map_err(diesel::ConnectionError::CouldntSetupConfiguration)?;
///         Ok(conn)
///     }
/// }
///
/// let mut conn = Sqlite(":memory:".into()).connect()?;
/// conn.batch_execute("SELECT 1;")?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub trait Connector: Send + Sync + 'static {
    /// The connection type the pool hands to each unit of work.
    type Connection: R2D2Connection + 'static;

    /// Opens one connection. Called on a blocking thread, by r2d2's workers or by
    /// [`Pool::build`](crate::Pool::build); it should give up within the pool's
    /// `connection_timeout`, which the pool cannot impose on a driver's connect call.
    fn connect(&self) -> Result<Self::Connection, diesel::ConnectionError>;
}

/// A [`Connector`] that opens each connection with diesel's `Connection::establish(url)`.
///
/// ```
/// use diesel::SqliteConnection;
/// use marquee_pool::{Connector, UrlConnector};
///
/// let connector = UrlConnector::<SqliteConnection>::new(":memory:");
/// assert!(connector.connect().is_ok());
/// ```
pub struct UrlConnector<C> {
    url: String,
    connection: PhantomData<fn() -> C>,
}

impl<C> UrlConnector<C> {
    /// A connector for `url`, in the form the connection type's `establish` takes.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            connection: PhantomData,
        }
    }
}

impl<C> fmt::Debug for UrlConnector<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The URL may hold a password; a connector that must show it can implement its own.
        f.debug_struct("UrlConnector").finish_non_exhaustive()
    }
}

impl<C: R2D2Connection + 'static> Connector for UrlConnector<C> {
    type Connection = C;

    fn connect(&self) -> Result<C, diesel::ConnectionError> {
        C::establish(&self.url)
    }
}
