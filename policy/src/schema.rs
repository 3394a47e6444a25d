//! JSON Schema stand-ins for the wire types that live in `aiops-proto`.
//! The jailer links proto and must not link schemars, so proto's types do
//! not implement `JsonSchema`; profile and flow fields of those types name
//! these stand-ins with `#[schemars(with = ...)]`. Each keeps the schema
//! name and text the type had, so docs/*.schema.json do not change.

/// A unit type whose schema is the string schema a proto type had.
macro_rules! stand_in {
    ($t:ident, $name:literal, $desc:literal) => {
        pub struct $t;
        crate::path::string_schema!($t, $name, $desc);
    };
}

stand_in!(
    RelPath,
    "RelPath",
    "A path relative to each writable root, such as .git/hooks; `..` is refused"
);
stand_in!(EnvName, "EnvName", "An environment variable name");
stand_in!(
    Cidr,
    "Cidr",
    "An address block such as 10.77.0.0/24 or fd00::/8; a bare address is a single host"
);
stand_in!(
    HostPort,
    "HostPort",
    "host:port with a required port; a leading *. matches any subdomain; IPv6 as [addr]:port"
);
stand_in!(
    LayerReq,
    "LayerReq",
    "userns, mountns, pidns, netns, ipcns, utsns, cgroupns, seccomp, landlock, landlock>=N, rlimits or cgroup"
);

/// Ordered from least to most reach: a node may ask for a mode at or below
/// its profile's.
#[derive(schemars::JsonSchema)]
#[schemars(rename = "NetMode")]
#[serde(rename_all = "snake_case")]
#[allow(dead_code)] // only its schema is used
pub enum NetMode {
    /// An empty network namespace: no interfaces at all (lo stays down).
    None,
    /// A private network namespace with only its own loopback up.
    Loopback,
    /// Private loopback plus egress to listed host:port through a proxy outside the jail.
    Allowlist,
    /// The host's network. Not a boundary; audited.
    Host,
}
