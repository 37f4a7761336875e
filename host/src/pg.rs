//! What PostgreSQL said, for the source that reads it and the state backend that writes
//! it: the server's own words, never the connection's URL (it holds the password).

/// The database's severity, message, detail and hint; a client-side error as the driver
/// says it (those name no URL either).
pub fn said(err: &tokio_postgres::Error) -> String {
    match err.as_db_error() {
        Some(db) => {
            let mut text = format!("{}: {}", db.severity(), db.message());
            if let Some(detail) = db.detail() {
                text.push_str(&format!(" ({detail})"));
            }
            if let Some(hint) = db.hint() {
                text.push_str(&format!("; hint: {hint}"));
            }
            text
        }
        None => err.to_string(),
    }
}
