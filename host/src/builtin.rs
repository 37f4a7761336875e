//! Connectors bundled in the binary, loaded by config as `builtin:NAME`.

/// The bundled components, compiled from `connectors/` by the build script.
const BUILTINS: &[(&str, &[u8])] = &[
    (
        "salesforce",
        include_bytes!(concat!(env!("OUT_DIR"), "/salesforce.wasm")),
    ),
    (
        "rest",
        include_bytes!(concat!(env!("OUT_DIR"), "/rest.wasm")),
    ),
];

/// The prefix that names a bundled connector in config.
pub const PREFIX: &str = "builtin:";

/// The component bundled as `name`, if there is one.
pub fn component(name: &str) -> Option<&'static [u8]> {
    BUILTINS
        .iter()
        .find(|(builtin, _)| *builtin == name)
        .map(|(_, wasm)| *wasm)
}

/// The names of every bundled connector, for error messages and `--help`.
pub fn names() -> impl Iterator<Item = &'static str> {
    BUILTINS.iter().map(|(name, _)| *name)
}
