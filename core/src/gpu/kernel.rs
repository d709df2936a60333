//! Compute kernels as data: a WGSL entry point, its storage bindings, and a typed parameter
//! struct declared once in Rust and checked against the shader by reflecting it with naga.
//!
//! A kernel (the crate's own or a user's) is a [`Kernel`] constant plus a [`KernelParams`]
//! struct written with [`kernel_params!`](crate::kernel_params). [`GpuBackend::dispatch`]
//! records it on the backend's device, parameter arena, pipeline and bind-group caches and
//! buffer pool. The first dispatch of each entry point (or [`GpuBackend::check_kernel`])
//! parses and validates the WGSL and compares it with the Rust side:
//! - the uniform at `@group(0) @binding(0)` is a struct whose members match the params'
//!   fields one for one: name, scalar type (`u32`, `i32`, `f32`) and byte offset, with the
//!   Rust struct no larger than the WGSL one;
//! - every storage buffer the entry point uses is in the kernel's buffer list with the same
//!   access, and every listed binding is a storage buffer of the module with that access;
//! - every named constant the kernel lists (a selector value Rust passes, say) has that value
//!   in the WGSL.
//!
//! A mismatch is an [`Error::Gpu`] naming the kernel, the item and both sides. Dispatch only
//! enqueues, so there it is recorded and returned by the next read, the way wgpu's own
//! validation errors are; the offending dispatch is skipped, never run with a wrong layout.
//!
//! [`GpuBackend::dispatch`]: super::GpuBackend::dispatch
//! [`GpuBackend::check_kernel`]: super::GpuBackend::check_kernel

use std::collections::HashMap;

use crate::{Error, Result};

/// The scalar type of one parameter field: the 4-byte scalars of WGSL.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ParamType {
    /// `u32`.
    U32,
    /// `i32`.
    I32,
    /// `f32`.
    F32,
}

impl ParamType {
    /// The WGSL spelling.
    pub fn wgsl(self) -> &'static str {
        match self {
            ParamType::U32 => "u32",
            ParamType::I32 => "i32",
            ParamType::F32 => "f32",
        }
    }
}

/// One field of a parameter struct, in declaration order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ParamField {
    /// The field's name, as in the WGSL struct.
    pub name: &'static str,
    /// Its scalar type.
    pub ty: ParamType,
}

mod sealed {
    pub trait Sealed {}
    impl Sealed for u32 {}
    impl Sealed for i32 {}
    impl Sealed for f32 {}
}

/// The Rust types a parameter field may have (`u32`, `i32`, `f32`): 4 bytes each, so a
/// `#[repr(C)]` struct of them has no padding and the offset of field `i` is `4·i`.
pub trait ParamScalar: sealed::Sealed + bytemuck::Pod {
    /// Its WGSL type.
    const TYPE: ParamType;
}
impl ParamScalar for u32 {
    const TYPE: ParamType = ParamType::U32;
}
impl ParamScalar for i32 {
    const TYPE: ParamType = ParamType::I32;
}
impl ParamScalar for f32 {
    const TYPE: ParamType = ParamType::F32;
}

/// A kernel's uniform parameters: a `#[repr(C)]` plain-old-data struct and its field list.
/// Write it with [`kernel_params!`](crate::kernel_params), which emits both from one
/// declaration; a hand-written impl must list every field in order.
pub trait KernelParams: bytemuck::Pod {
    /// The fields in declaration order.
    const FIELDS: &'static [ParamField];
}

/// Declares a kernel parameter struct once: the `#[repr(C)]` struct (with `Clone`, `Copy`,
/// `Debug`, `Default`, `PartialEq` and `bytemuck::Pod`) and its [`KernelParams`] field list.
/// Fields must be `u32`, `i32` or `f32`, named and ordered as in the WGSL struct.
///
/// ```
/// bilevel_core::kernel_params! {
///     /// Parameters of `scale.wgsl`.
///     pub struct ScaleParams { pub n: u32, pub factor: f32 }
/// }
/// use bilevel_core::gpu::KernelParams;
/// assert_eq!(ScaleParams::FIELDS[1].name, "factor");
/// ```
#[macro_export]
macro_rules! kernel_params {
    ($(#[$meta:meta])* $vis:vis struct $name:ident { $($(#[$fmeta:meta])* $fvis:vis $field:ident : $ty:ty),* $(,)? }) => {
        $(#[$meta])*
        #[repr(C)]
        #[derive(Clone, Copy, Debug, Default, PartialEq)]
        $vis struct $name { $($(#[$fmeta])* $fvis $field: $ty),* }

        // SAFETY: `#[repr(C)]` with fields that are all `ParamScalar` (u32, i32, f32: 4-byte
        // plain data, enforced by the bound below), so there is no padding and every bit
        // pattern is valid; zero is a valid value of each.
        unsafe impl $crate::gpu::bytemuck::Zeroable for $name {}
        unsafe impl $crate::gpu::bytemuck::Pod for $name {}

        impl $crate::gpu::KernelParams for $name {
            const FIELDS: &'static [$crate::gpu::ParamField] = &[$($crate::gpu::ParamField {
                name: stringify!($field),
                ty: <$ty as $crate::gpu::ParamScalar>::TYPE,
            }),*];
        }
    };
}

/// How an entry point uses a storage buffer (`var<storage, read>` or `read_write`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// `var<storage, read>`: the kernel only reads it.
    Read,
    /// `var<storage, read_write>`: the kernel writes it.
    ReadWrite,
}

impl Access {
    fn wgsl(self) -> &'static str {
        match self {
            Access::Read => "read",
            Access::ReadWrite => "read_write",
        }
    }
}

/// A compute entry point and the storage buffers a dispatch passes it, in the order they are
/// passed. Binding 0 of group 0 is always the params uniform (one 256-byte arena slot bound
/// with a dynamic offset); everything is in group 0. `module` names the WGSL source: it keys
/// the shader-module and pipeline caches, so one name must always mean one source.
#[derive(Clone, Copy, Debug)]
pub struct Kernel {
    /// The WGSL module's name (a cache key: one name, one source).
    pub module: &'static str,
    /// The WGSL source.
    pub source: &'static str,
    /// The compute entry point's name.
    pub entry: &'static str,
    /// `(binding, access)` of each buffer a dispatch passes, in that order.
    pub buffers: &'static [(u32, Access)],
    /// Named WGSL constants (`const NAME: u32 = …;`) the Rust side relies on, with the value
    /// it passes for them: selector values in the params, for instance.
    pub constants: &'static [(&'static str, u32)],
}

impl Kernel {
    /// An entry point of `source` with the storage buffers a dispatch passes, in order.
    pub const fn new(module: &'static str, source: &'static str, entry: &'static str, buffers: &'static [(u32, Access)]) -> Self {
        Kernel { module, source, entry, buffers, constants: &[] }
    }

    /// The same kernel, also checking these named constants.
    pub const fn with_constants(self, constants: &'static [(&'static str, u32)]) -> Self {
        Kernel { constants, ..self }
    }

    /// Reflects the WGSL and checks it against `P` and the buffer list, without a device.
    pub fn check<P: KernelParams>(&self) -> Result<()> {
        let reflection = Reflection::parse(self.module, self.source).map_err(Error::Gpu)?;
        reflection.check::<P>(self).map(|_| ()).map_err(Error::Gpu)
    }
}

/// A parsed and validated WGSL module: what the checks read.
pub(crate) struct Reflection {
    source: &'static str,
    module: naga::Module,
    info: naga::valid::ModuleInfo,
}

/// What a passing check learnt about an entry point.
pub(crate) struct EntryShape {
    /// Invocations per workgroup.
    pub threads: u32,
}

/// Folds a multi-line diagnostic into one line.
fn one_line(text: &str) -> String {
    text.lines().map(str::trim).filter(|l| !l.is_empty()).collect::<Vec<_>>().join(" | ")
}

fn scalar_type(module: &naga::Module, ty: naga::Handle<naga::Type>) -> std::result::Result<ParamType, String> {
    use naga::{ScalarKind, TypeInner};
    match &module.types[ty].inner {
        TypeInner::Scalar(naga::Scalar { kind: ScalarKind::Uint, width: 4 }) => Ok(ParamType::U32),
        TypeInner::Scalar(naga::Scalar { kind: ScalarKind::Sint, width: 4 }) => Ok(ParamType::I32),
        TypeInner::Scalar(naga::Scalar { kind: ScalarKind::Float, width: 4 }) => Ok(ParamType::F32),
        other => Err(format!("{other:?}")),
    }
}

impl Reflection {
    pub(crate) fn parse(name: &str, source: &'static str) -> std::result::Result<Self, String> {
        let module = naga::front::wgsl::parse_str(source)
            .map_err(|e| format!("module {name}: WGSL does not parse: {}", one_line(&e.emit_to_string(source))))?;
        // wgpu validates against the device's capabilities when it creates the pipeline; this
        // pass is for the binding analysis, so it allows every capability.
        let info = naga::valid::Validator::new(naga::valid::ValidationFlags::all(), naga::valid::Capabilities::all())
            .validate(&module)
            .map_err(|e| format!("module {name}: WGSL does not validate: {}", one_line(&e.emit_to_string(source))))?;
        Ok(Reflection { source, module, info })
    }

    fn global_at(&self, binding: u32) -> Option<&naga::GlobalVariable> {
        self.module.global_variables.iter().map(|(_, v)| v).find(|v| v.binding == Some(naga::ResourceBinding { group: 0, binding }))
    }

    /// Checks `kernel` with params `P` against this module.
    pub(crate) fn check<P: KernelParams>(&self, kernel: &Kernel) -> std::result::Result<EntryShape, String> {
        let fail = |what: String| format!("kernel {}::{}: {what}", kernel.module, kernel.entry);
        if !std::ptr::eq(self.source, kernel.source) && self.source != kernel.source {
            return Err(fail(format!("module name {} is already used by a different WGSL source", kernel.module)));
        }
        let module = &self.module;
        let Some(index) = module.entry_points.iter().position(|e| e.name == kernel.entry && e.stage == naga::ShaderStage::Compute) else {
            let names: Vec<&str> = module.entry_points.iter().map(|e| e.name.as_str()).collect();
            return Err(fail(format!("no compute entry point {:?} (the module has: {})", kernel.entry, names.join(", "))));
        };
        let uses = self.info.get_entry_point(index);
        self.check_params::<P>().map_err(fail)?;
        self.check_buffers(kernel, uses).map_err(fail)?;
        self.check_constants(kernel).map_err(fail)?;
        let [x, y, z] = module.entry_points[index].workgroup_size;
        Ok(EntryShape { threads: x * y * z })
    }

    fn check_params<P: KernelParams>(&self) -> std::result::Result<(), String> {
        let rust = std::any::type_name::<P>();
        let size = std::mem::size_of::<P>();
        if size != 4 * P::FIELDS.len() {
            return Err(format!("{rust} is {size} bytes but its FIELDS list {} 4-byte fields", P::FIELDS.len()));
        }
        if size > super::PARAM_SLOT {
            return Err(format!("{rust} is {size} bytes, more than one {}-byte parameter slot", super::PARAM_SLOT));
        }
        let Some(var) = self.global_at(0) else {
            return Err(format!("the module declares no @group(0) @binding(0) uniform for the params {rust}"));
        };
        if var.space != naga::AddressSpace::Uniform {
            return Err(format!("@group(0) @binding(0) is {:?}, not the params uniform", var.space));
        }
        let ty = &self.module.types[var.ty];
        let naga::TypeInner::Struct { members, span } = &ty.inner else {
            return Err(format!("the params uniform is {:?}, not a struct", ty.inner));
        };
        let wgsl = ty.name.as_deref().unwrap_or("the uniform struct");
        for i in 0..P::FIELDS.len().max(members.len()) {
            let (r, w) = match (P::FIELDS.get(i), members.get(i)) {
                (Some(r), Some(w)) => (r, w),
                (Some(r), None) => {
                    return Err(format!(
                        "{rust} field {i} `{}: {}` has no counterpart in WGSL {wgsl}, which has {} members",
                        r.name,
                        r.ty.wgsl(),
                        members.len()
                    ))
                }
                (None, Some(w)) => {
                    let ty = scalar_type(&self.module, w.ty).map_or_else(|t| t, |t| t.wgsl().to_string());
                    return Err(format!(
                        "WGSL {wgsl} member {i} `{}: {ty}` is missing from {rust}, which has {} fields",
                        w.name.as_deref().unwrap_or("?"),
                        P::FIELDS.len()
                    ));
                }
                (None, None) => unreachable!(),
            };
            let w_name = w.name.as_deref().unwrap_or("?");
            if r.name != w_name {
                return Err(format!("field {i} is `{}` in {rust} but `{w_name}` in WGSL {wgsl} (same names in the same order)", r.name));
            }
            let w_ty = scalar_type(&self.module, w.ty)
                .map_err(|t| format!("WGSL {wgsl} member `{w_name}` is {t}; params fields must be u32, i32 or f32"))?;
            if r.ty != w_ty {
                return Err(format!("field `{}` is {} in {rust} but {} in WGSL {wgsl}", r.name, r.ty.wgsl(), w_ty.wgsl()));
            }
            if w.offset != 4 * i as u32 {
                return Err(format!("field `{}` is at byte {} in {rust} but at byte {} in WGSL {wgsl}", r.name, 4 * i, w.offset));
            }
        }
        if size > *span as usize {
            return Err(format!("{rust} is {size} bytes but WGSL {wgsl} spans {span}"));
        }
        Ok(())
    }

    fn check_buffers(&self, kernel: &Kernel, uses: &naga::valid::FunctionInfo) -> std::result::Result<(), String> {
        let mut listed: HashMap<u32, Access> = HashMap::new();
        for &(binding, access) in kernel.buffers {
            if binding == 0 {
                return Err("the buffer list names binding 0, which is the params uniform".into());
            }
            if listed.insert(binding, access).is_some() {
                return Err(format!("the buffer list names binding {binding} twice"));
            }
            let Some(var) = self.global_at(binding) else {
                return Err(format!("the buffer list names binding {binding}, which the module does not declare"));
            };
            let name = var.name.as_deref().unwrap_or("?");
            match var.space {
                naga::AddressSpace::Storage { access: a } => {
                    let wgsl = if a.contains(naga::StorageAccess::STORE) { Access::ReadWrite } else { Access::Read };
                    if wgsl != access {
                        return Err(format!(
                            "binding {binding} `{name}` is {} in the buffer list but var<storage, {}> in WGSL",
                            access.wgsl(),
                            wgsl.wgsl()
                        ));
                    }
                }
                other => return Err(format!("binding {binding} `{name}` is {other:?} in WGSL, not a storage buffer")),
            }
        }
        for (handle, var) in self.module.global_variables.iter() {
            let Some(rb) = var.binding else { continue };
            if uses[handle].is_empty() || (rb.group == 0 && rb.binding == 0) {
                continue;
            }
            let name = var.name.as_deref().unwrap_or("?");
            if rb.group != 0 {
                return Err(format!(
                    "the entry point uses @group({}) @binding({}) `{name}`; kernels bind only group 0",
                    rb.group, rb.binding
                ));
            }
            if !listed.contains_key(&rb.binding) {
                return Err(format!("the entry point uses binding {} `{name}`, which is not in the buffer list", rb.binding));
            }
        }
        Ok(())
    }

    fn check_constants(&self, kernel: &Kernel) -> std::result::Result<(), String> {
        for &(name, value) in kernel.constants {
            let Some((_, c)) = self.module.constants.iter().find(|(_, c)| c.name.as_deref() == Some(name)) else {
                return Err(format!("the WGSL declares no constant `{name}` (Rust passes {value} for it)"));
            };
            let wgsl = match self.module.global_expressions[c.init] {
                naga::Expression::Literal(naga::Literal::U32(v)) => Some(v as i64),
                naga::Expression::Literal(naga::Literal::I32(v)) => Some(v as i64),
                naga::Expression::Literal(naga::Literal::AbstractInt(v)) => Some(v),
                _ => None,
            };
            match wgsl {
                Some(v) if v == value as i64 => {}
                Some(v) => return Err(format!("constant `{name}` is {v} in WGSL but {value} in Rust")),
                None => return Err(format!("constant `{name}` is not an integer literal in WGSL")),
            }
        }
        Ok(())
    }
}
