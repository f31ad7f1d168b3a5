//! Loading, validating and running one policy module.

use super::conformance::{check_conformance, ConformanceReport};
use super::sandbox::{Sandbox, StoreState, FUEL_PER_DECISION};
use super::{Ballot, Decision, Fault, LoadError, Policy, PolicyInfo, DEFAULT_POLICY_WASM};
use policy_sdk::abi::{ABI_MAJOR, MIN_INPUT_CAP};
use policy_sdk::Verdict;
use sha2::{Digest, Sha256};
use std::path::PathBuf;
use wasmtime::{
    Extern, ExternType, Instance, InstancePre, Linker, Module, ModuleExport, Store, ValType,
};

/// Where a policy module comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PolicySource {
    /// The default policy compiled into eb.
    Embedded,
    /// A `.wasm` binary or `.wat` text file.
    File(PathBuf),
}

impl PolicySource {
    /// Name shown in `/status` and logs.
    pub fn name(&self) -> String {
        match self {
            PolicySource::Embedded => "default (embedded)".to_owned(),
            PolicySource::File(path) => path.display().to_string(),
        }
    }
}

/// A validated policy module, ready to decide ballots in fresh sandboxed instances.
pub struct WasmPolicy {
    sandbox: &'static Sandbox,
    pre: InstancePre<StoreState>,
    memory: ModuleExport,
    decide: ModuleExport,
    input_ptr: usize,
    input_cap: usize,
    abi_minor: i32,
    info: PolicyInfo,
    conformance: ConformanceReport,
}

const FUNC_EXPORTS: [(&str, &[ValType], &[ValType], &str); 4] = [
    (
        "eb_abi_version",
        &[],
        &[ValType::I32],
        "a function () -> i32",
    ),
    ("eb_input_ptr", &[], &[ValType::I32], "a function () -> i32"),
    ("eb_input_cap", &[], &[ValType::I32], "a function () -> i32"),
    (
        "eb_decide",
        &[ValType::I32],
        &[ValType::I64],
        "a function (i32) -> i64",
    ),
];
const CONFIGURE: (&str, &[ValType], &[ValType], &str) = (
    "eb_configure",
    &[ValType::I32],
    &[ValType::I32],
    "a function (i32) -> i32",
);

fn same_types(found: impl ExactSizeIterator<Item = ValType>, wanted: &[ValType]) -> bool {
    found.len() == wanted.len() && found.zip(wanted).all(|(a, b)| ValType::eq(&a, b))
}

/// Checks that `name` is exported as a function with the given signature; `Ok(false)` if absent.
fn check_func(
    module: &Module,
    (name, params, results, expected): (&'static str, &[ValType], &[ValType], &'static str),
) -> Result<bool, LoadError> {
    match module.get_export(name) {
        None => Ok(false),
        Some(ExternType::Func(ty))
            if same_types(ty.params(), params) && same_types(ty.results(), results) =>
        {
            Ok(true)
        }
        Some(_) => Err(LoadError::ExportType { name, expected }),
    }
}

fn call_i32(
    store: &mut Store<StoreState>,
    instance: &Instance,
    export: &'static str,
    arg: Option<i32>,
) -> Result<i32, LoadError> {
    let fault = |e: wasmtime::Error| LoadError::Call {
        export,
        fault: Fault::from_wasmtime(&e),
    };
    match arg {
        None => instance
            .get_typed_func::<(), i32>(&mut *store, export)
            .and_then(|f| f.call(&mut *store, ()))
            .map_err(fault),
        Some(arg) => instance
            .get_typed_func::<i32, i32>(&mut *store, export)
            .and_then(|f| f.call(&mut *store, arg))
            .map_err(fault),
    }
}

impl WasmPolicy {
    /// Loads, validates and configures a policy, then runs the built-in conformance cases.
    pub fn load(source: &PolicySource, config: &str) -> Result<WasmPolicy, LoadError> {
        match source {
            PolicySource::Embedded => Self::from_bytes(source.name(), DEFAULT_POLICY_WASM, config),
            PolicySource::File(path) => {
                let bytes = std::fs::read(path).map_err(|source| LoadError::Read {
                    path: path.display().to_string(),
                    source,
                })?;
                Self::from_bytes(source.name(), &bytes, config)
            }
        }
    }

    /// Like [`load`](Self::load), from module bytes (binary or WAT text).
    pub fn from_bytes(name: String, bytes: &[u8], config: &str) -> Result<WasmPolicy, LoadError> {
        let sandbox = Sandbox::shared().map_err(LoadError::Sandbox)?;
        let module = Module::new(sandbox.engine(), bytes)
            .map_err(|e| LoadError::Compile(format!("{e:#}")))?;
        if let Some(import) = module.imports().next() {
            return Err(LoadError::Import {
                module: import.module().to_owned(),
                name: import.name().to_owned(),
            });
        }
        match module.get_export("memory") {
            Some(ExternType::Memory(_)) => {}
            Some(_) => {
                return Err(LoadError::ExportType {
                    name: "memory",
                    expected: "a memory",
                })
            }
            None => return Err(LoadError::MissingExport("memory")),
        }
        for export in FUNC_EXPORTS {
            if !check_func(&module, export)? {
                return Err(LoadError::MissingExport(export.0));
            }
        }
        let has_configure = check_func(&module, CONFIGURE)?;
        let pre = Linker::new(sandbox.engine())
            .instantiate_pre(&module)
            .map_err(|e| LoadError::Instantiate(Fault::Limit(format!("{e:#}"))))?;

        let _running = sandbox.running();
        let mut store = sandbox
            .store()
            .map_err(|e| LoadError::Instantiate(Fault::from_wasmtime(&e)))?;
        let instance = pre
            .instantiate(&mut store)
            .map_err(|e| LoadError::Instantiate(Fault::from_wasmtime(&e)))?;
        let version = call_i32(&mut store, &instance, "eb_abi_version", None)?;
        let (major, minor) = (version >> 16, version & 0xffff);
        if major != i32::from(ABI_MAJOR) {
            return Err(LoadError::AbiVersion {
                major,
                minor,
                expected: ABI_MAJOR,
            });
        }
        let ptr = call_i32(&mut store, &instance, "eb_input_ptr", None)?;
        let cap = call_i32(&mut store, &instance, "eb_input_cap", None)?;
        let memory = instance
            .get_memory(&mut store, "memory")
            .ok_or(LoadError::MissingExport("memory"))?;
        let memory_size = memory.data_size(&store);
        let needed = MIN_INPUT_CAP + config.len();
        let (input_ptr, input_cap) = (ptr as u32 as usize, cap as u32 as usize);
        if ptr < 0 || (cap as usize) < needed || input_ptr + input_cap > memory_size {
            return Err(LoadError::InputBuffer {
                ptr,
                cap,
                needed,
                memory: memory_size,
            });
        }
        if has_configure {
            memory.data_mut(&mut store)[input_ptr..input_ptr + config.len()]
                .copy_from_slice(config.as_bytes());
            if call_i32(
                &mut store,
                &instance,
                "eb_configure",
                Some(config.len() as i32),
            )? != 0
            {
                return Err(LoadError::Config(config.to_owned()));
            }
        } else if !config.is_empty() {
            return Err(LoadError::NoConfig(config.to_owned()));
        }

        let (memory_export, decide) = match (
            module.get_export_index("memory"),
            module.get_export_index("eb_decide"),
        ) {
            (Some(memory), Some(decide)) => (memory, decide),
            _ => return Err(LoadError::MissingExport("eb_decide")),
        };
        let mut policy = WasmPolicy {
            sandbox,
            pre,
            memory: memory_export,
            decide,
            input_ptr,
            input_cap,
            abi_minor: minor,
            info: PolicyInfo {
                name,
                sha256: hex::encode(Sha256::digest(bytes)),
                size: bytes.len(),
                config: config.to_owned(),
                loaded_at: std::time::SystemTime::now(),
            },
            conformance: ConformanceReport::default(),
        };
        policy.conformance = check_conformance(&policy);
        if let Some((case, fault)) = policy.conformance.faults.first() {
            return Err(LoadError::Conformance {
                case: case.clone(),
                fault: fault.clone(),
            });
        }
        Ok(policy)
    }

    /// The ABI minor version the module declares.
    pub fn abi_minor(&self) -> i32 {
        self.abi_minor
    }

    /// What the built-in conformance cases measured at load.
    pub fn conformance(&self) -> &ConformanceReport {
        &self.conformance
    }

    /// Runs the module once: fresh instance, ballot written into its buffer, `eb_decide` called.
    fn run(&self, ballot: &Ballot) -> Result<(i64, u64), (Fault, u64)> {
        let _running = self.sandbox.running();
        let mut store = self
            .sandbox
            .store()
            .map_err(|e| (Fault::from_wasmtime(&e), 0))?;
        let used = |store: &Store<StoreState>| FUEL_PER_DECISION - store.get_fuel().unwrap_or(0);
        let instance = match self.pre.instantiate(&mut store) {
            Ok(instance) => instance,
            Err(e) => return Err((Fault::from_wasmtime(&e), used(&store))),
        };
        let missing = || Fault::Limit("module exports changed".to_owned());
        let Some(Extern::Memory(memory)) = instance.get_module_export(&mut store, &self.memory)
        else {
            return Err((missing(), used(&store)));
        };
        let buffer = memory
            .data_mut(&mut store)
            .get_mut(self.input_ptr..self.input_ptr + self.input_cap)
            .ok_or((Fault::Limit("input buffer outside memory".to_owned()), 0))?;
        // A 1.0 module is not sent the pending records of 1.1 (they come last, so vote indices
        // are the same in both).
        let encoded = if self.abi_minor == 0 {
            ballot.without_pending().encode(buffer)
        } else {
            ballot.encode(buffer)
        };
        let len = encoded.map_err(|e| (Fault::Input(e), 0))?;
        let decide = instance
            .get_module_export(&mut store, &self.decide)
            .and_then(Extern::into_func)
            .ok_or_else(missing)
            .and_then(|f| {
                f.typed::<i32, i64>(&store)
                    .map_err(|e| Fault::from_wasmtime(&e))
            })
            .map_err(|fault| (fault, used(&store)))?;
        match decide.call(&mut store, len as i32) {
            Ok(raw) => Ok((raw, used(&store))),
            Err(e) => Err((Fault::from_wasmtime(&e), used(&store))),
        }
    }
}

impl Policy for WasmPolicy {
    fn decide(&self, ballot: &Ballot) -> Decision {
        match self.run(ballot) {
            Ok((raw, fuel)) => match Verdict::decode(raw) {
                Some(verdict) => Decision::checked(ballot, verdict, fuel),
                None => Decision::fault(Fault::BadVerdict(raw), fuel),
            },
            Err((fault, fuel)) => Decision::fault(fault, fuel),
        }
    }

    fn info(&self) -> &PolicyInfo {
        &self.info
    }
}
