//! An error and its causes on one line: how a failure from a library (HTTP, OAuth2) is
//! shown to a person and stored with a record.

/// `err: cause: cause`, outermost first.
pub fn one_line(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
