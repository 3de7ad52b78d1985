//! A component file, read before it is compiled: what it imports and exports, which world of
//! which version of the contract it is, how many core instances it makes. A component this host
//! would refuse is refused here, with every reason at once, before any time is spent compiling
//! it and before anything of it is cached; one that passes is compiled, or taken from the code
//! cache.

use wasmparser::{ComponentExternalKind, Parser, Payload};
use wasmtime::Engine;
use wasmtime::component::Component;

use super::Runtime;
use super::cache::CacheOutcome;
use super::call::root;
use crate::bindings::{self, PACKAGE_NAME};
use crate::capabilities::Role;
use crate::config::{Config, ConfigError};
use crate::limits::Limits;

/// Why a component file cannot serve.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// Not WebAssembly, or a core module rather than a component.
    #[error("{0}")]
    NotAComponent(String),
    /// It imports what this host does not grant.
    #[error(
        "it imports what this host does not grant to a {role}: {}",
        imports.join(", ")
    )]
    ForbiddenImports {
        /// What it is.
        role: &'static str,
        /// Every refused import.
        imports: Vec<String>,
    },
    /// It does not fit the world this host serves.
    #[error("it does not fit the world {package}: {detail}")]
    Incompatible {
        /// The package the host serves.
        package: &'static str,
        /// What did not fit.
        detail: String,
    },
    /// It was built against a version of the contract this host does not serve.
    #[error(
        "it was built against {PACKAGE_NAME}@{plugin}, but this host serves {PACKAGE_NAME}@{host} \
         and {PACKAGE_NAME}@{old} (and compatible versions)",
        host = bindings::VERSION,
        old = bindings::v0_1::VERSION
    )]
    IncompatibleVersion {
        /// The version the plugin was built against.
        plugin: String,
    },
    /// It is a component of another role than the one it was configured as.
    #[error("{0}")]
    WrongRole(String),
    /// It needs more of something than its limits allow.
    #[error("it creates {found} core instances, more than plugin.limits.instances = {limit}")]
    TooManyInstances {
        /// What it creates.
        found: u32,
        /// The limit.
        limit: u32,
    },
    /// The engine could not be set up.
    #[error("{0}")]
    Engine(String),
}

/// Which contract a component was built against.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Contract {
    /// `billing:reseller@0.1.x`.
    V0_1,
    /// `billing:reseller@0.2.x`.
    V0_2,
}

impl Contract {
    /// The version the host links it as.
    pub fn version(self) -> &'static str {
        match self {
            Contract::V0_1 => bindings::v0_1::VERSION,
            Contract::V0_2 => bindings::VERSION,
        }
    }
}

/// What a component file says about itself.
#[derive(Clone, Debug)]
pub struct Inspected {
    /// Its imports, as named in its type.
    pub imports: Vec<String>,
    /// Its exports, as named in its type.
    pub exports: Vec<String>,
    /// What it is to the host.
    pub role: Role,
    /// Which contract.
    pub contract: Contract,
    /// Core module instances it creates, nested components included.
    pub core_instances: u32,
}

/// Reads a component's imports, exports and size before compiling it, and refuses what this
/// host would refuse: not a component, a contract version it does not serve, imports it does
/// not grant (every one named), more core instances than `limits` allow.
pub fn inspect(bytes: &[u8], limits: &Limits) -> Result<Inspected, LoadError> {
    check_header(bytes)?;
    let mut imports = Vec::new();
    let mut exports = Vec::new();
    let mut core_instances = 0u32;
    let not_a_component = |e: wasmparser::BinaryReaderError| {
        LoadError::NotAComponent(format!("it is not a valid component: {e}"))
    };
    // Top-level imports and exports; core instances at every depth.
    let mut depth = 0usize;
    for payload in Parser::new(0).parse_all(bytes) {
        match payload.map_err(not_a_component)? {
            Payload::ComponentImportSection(reader) if depth == 0 => {
                for import in reader {
                    imports.push(import.map_err(not_a_component)?.name.name.to_owned());
                }
            }
            Payload::ComponentExportSection(reader) if depth == 0 => {
                for export in reader {
                    let export = export.map_err(not_a_component)?;
                    if export.kind == ComponentExternalKind::Instance {
                        exports.push(export.name.name.to_owned());
                    }
                }
            }
            // Module instantiations only: an instance made of exports (the glue between
            // modules that componentize-py and componentize-js emit by the dozen) costs nothing.
            Payload::InstanceSection(reader) => {
                for instance in reader {
                    if let wasmparser::Instance::Instantiate { .. } =
                        instance.map_err(not_a_component)?
                    {
                        core_instances = core_instances.saturating_add(1);
                    }
                }
            }
            Payload::ModuleSection { .. } | Payload::ComponentSection { .. } => depth += 1,
            Payload::End(_) => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    let exported = |interface: &str| {
        exports
            .iter()
            .find_map(|e| contract_version(e).filter(|_| e.starts_with(interface)))
    };
    let (role, version) = match (
        exported("billing:reseller/policy"),
        exported("billing:reseller/pricing"),
    ) {
        (Some(version), _) => (Role::Policy, version),
        (None, Some(version)) => {
            let takes_policy = imports
                .iter()
                .any(|i| i.starts_with("billing:reseller/policy@"));
            let role = if takes_policy {
                Role::Protocol
            } else {
                Role::Plugin
            };
            (role, version)
        }
        (None, None) => {
            // Not ours at all, or ours at a version whose exports we cannot read.
            let version = imports
                .iter()
                .chain(&exports)
                .find_map(|n| contract_version(n));
            return Err(match version {
                Some(v) if contract(v).is_none() => LoadError::IncompatibleVersion {
                    plugin: v.to_owned(),
                },
                _ => LoadError::Incompatible {
                    package: bindings::PACKAGE,
                    detail: "it exports neither the pricing hooks nor a pricing policy".to_owned(),
                },
            });
        }
    };
    let built_against = contract(version).ok_or_else(|| LoadError::IncompatibleVersion {
        plugin: version.to_owned(),
    })?;
    // Every import of our package must be of the same contract as the exports.
    let refused: Vec<String> = imports
        .iter()
        .filter(|i| {
            !role.grants(i)
                || contract_version(i).is_some_and(|v| contract(v) != Some(built_against))
        })
        .cloned()
        .collect();
    if !refused.is_empty() {
        return Err(LoadError::ForbiddenImports {
            role: role_name(role),
            imports: refused,
        });
    }
    if core_instances > limits.instances {
        return Err(LoadError::TooManyInstances {
            found: core_instances,
            limit: limits.instances,
        });
    }
    Ok(Inspected {
        imports,
        exports,
        role,
        contract: built_against,
        core_instances,
    })
}

/// Compiles a component that passed [`inspect`], or takes it from the runtime's code cache.
pub fn compile(
    runtime: &Runtime,
    engine: &Engine,
    sha256: &str,
    bytes: &[u8],
) -> Result<(Component, Option<CacheOutcome>), LoadError> {
    let compile = || Component::new(engine, bytes);
    match runtime.cache() {
        Some(cache) => cache
            .load_or_compile(engine, sha256, compile)
            .map(|(c, o)| (c, Some(o))),
        None => compile().map(|c| (c, None)),
    }
    .map_err(|e| LoadError::NotAComponent(format!("it is not a valid component: {}", root(&e))))
}

/// The role's name in messages.
pub fn role_name(role: Role) -> &'static str {
    match role {
        Role::Plugin => "whole plugin",
        Role::Protocol => "protocol component",
        Role::Policy => "pricing policy",
    }
}

/// The version of our package an import or export names, e.g. `0.2.0` in
/// `billing:reseller/pricing@0.2.0`.
fn contract_version(name: &str) -> Option<&str> {
    let (interface, version) = name.split_once('@')?;
    interface.strip_prefix(PACKAGE_NAME)?.strip_prefix('/')?;
    Some(version)
}

/// The contract a version belongs to, by Cargo's semver rule: the same major, and at 0.x the
/// same minor.
fn contract(version: &str) -> Option<Contract> {
    let v = semver::Version::parse(version).ok()?;
    [Contract::V0_2, Contract::V0_1].into_iter().find(|c| {
        semver::Version::parse(c.version())
            .is_ok_and(|h| h.major == v.major && (h.major != 0 || h.minor == v.minor))
    })
}

/// Tells a component from a core module or another file before the compiler's message does.
fn check_header(bytes: &[u8]) -> Result<(), LoadError> {
    const MAGIC: &[u8] = b"\0asm";
    const CORE_MODULE: &[u8] = &[1, 0, 0, 0];
    match (bytes.get(..4), bytes.get(4..8)) {
        (Some(MAGIC), Some(CORE_MODULE)) => Err(LoadError::NotAComponent(
            "it is a core wasm module, not a component; build it for wasm32-wasip2".to_owned(),
        )),
        (Some(MAGIC), Some(_)) => Ok(()),
        _ => Err(LoadError::NotAComponent(
            "it is not a WebAssembly file".to_owned(),
        )),
    }
}

/// The bytes of the component configured under `table` (`path`, pinned by `sha256`), or the
/// built-in one when no path is configured, with its name for logs.
pub fn read_component(
    config: &Config,
    table: &str,
    path: Option<&std::path::Path>,
    sha256: Option<&str>,
    builtin: (&str, &[u8]),
) -> Result<(String, Vec<u8>), ConfigError> {
    let source = &config.source;
    let key_error =
        |key: &str, message: String| ConfigError::new(source, format!("{table}.{key}"), message);
    let (name, bytes) = match path {
        None => (builtin.0.to_owned(), builtin.1.to_vec()),
        Some(path) => {
            let path = source.resolve(path);
            let bytes = std::fs::read(&path)
                .map_err(|e| key_error("path", format!("cannot read {}: {e}", path.display())))?;
            (path.display().to_string(), bytes)
        }
    };
    if let Some(pin) = sha256 {
        let actual = super::plugin_sha256(&bytes);
        if !actual.eq_ignore_ascii_case(pin) {
            return Err(key_error(
                "sha256",
                format!(
                    "{name} has SHA-256 {actual}, not the pinned {}",
                    pin.to_ascii_lowercase()
                ),
            ));
        }
    }
    Ok((name, bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_are_told_apart() {
        assert!(
            matches!(check_header(b"hello"), Err(LoadError::NotAComponent(m)) if m.contains("not a WebAssembly"))
        );
        assert!(
            matches!(check_header(b"\0asm\x01\0\0\0"), Err(LoadError::NotAComponent(m)) if m.contains("core wasm module"))
        );
        assert!(check_header(b"\0asm\x0d\0\x01\0").is_ok());
        assert!(matches!(
            inspect(b"\0asm\x0d\0\x01\0\xff", &Limits::default()),
            Err(LoadError::NotAComponent(_))
        ));
    }

    #[test]
    fn contract_versions_follow_semver() {
        assert_eq!(
            contract_version("billing:reseller/pricing@0.1.3"),
            Some("0.1.3")
        );
        assert_eq!(contract_version("wasi:io/streams@0.2.6"), None);
        assert_eq!(contract_version("billing:resellerx/pricing@9.0.0"), None);
        assert_eq!(contract("0.1.0"), Some(Contract::V0_1));
        assert_eq!(contract("0.1.7"), Some(Contract::V0_1));
        assert_eq!(contract("0.2.0"), Some(Contract::V0_2));
        assert_eq!(contract("0.2.9"), Some(Contract::V0_2));
        assert_eq!(contract("0.3.0"), None);
        assert_eq!(contract("1.0.0"), None);
        assert_eq!(contract("garbage"), None);
    }

    #[test]
    fn each_role_imports_only_what_it_is_granted() {
        for role in [Role::Plugin, Role::Protocol, Role::Policy] {
            assert!(role.grants("wasi:io/streams@0.2.6"));
            assert!(role.grants("wasi:clocks/wall-clock@0.2.9"));
            assert!(role.grants("wasi:http/types@0.2.10"));
            assert!(role.grants("billing:reseller/log@0.2.0"));
            assert!(!role.grants("wasi:keyvalue/store@0.2.0"));
            assert!(!role.grants("billing:reseller/secrets@0.2.0"));
        }
        assert!(Role::Plugin.grants("billing:reseller/upstream@0.2.0"));
        assert!(!Role::Plugin.grants("billing:reseller/policy@0.2.0"));
        assert!(Role::Protocol.grants("billing:reseller/policy@0.2.0"));
        assert!(!Role::Policy.grants("billing:reseller/upstream@0.2.0"));
        assert!(!Role::Policy.grants("billing:reseller/catalogue@0.2.0"));
    }
}
