//! The wgpu backend: WGSL kernels on Vulkan/Metal/DX12 natively and on WebGPU in a browser.
//!
//! How it keeps data on the device and the CPU out of the loop:
//! - **Enqueue only.** Every [`Backend`] operation records a dispatch; nothing is submitted until
//!   a read, an explicit [`Backend::flush`], or a full parameter arena. A CG or Neumann step is
//!   a handful of dispatches with no round trip.
//! - **Per-dispatch parameters** go into one uniform arena (256-byte slots, bound with a dynamic
//!   offset) written with a single `write_buffer` just before the submit.
//! - **Device scalars** are slots of one `scalars` storage buffer; kernels read ratios of them
//!   (see [`Coef`]), so step sizes such as CG's α never leave the GPU.
//! - **Buffers are pooled** by size. A dropped buffer is retired and only reusable after the
//!   next submit, so work already recorded against it still sees its old contents; uploads
//!   (`write_buffer`) only ever target fresh or reusable buffers for the same reason.
//! - **Pipelines and bind groups are cached**, keyed by kernel and by the ids of the bound
//!   buffers, so steady-state iterations create no GPU objects.
//! - **Kernels are data** ([`Kernel`] plus a [`kernel_params!`](crate::kernel_params) struct),
//!   the crate's own and a user's alike, and each is reflected against its WGSL before its
//!   pipeline is created (see [`kernel`]).
//! - **Readback is asynchronous**: `map_async` plus a oneshot channel. Natively the device is
//!   polled to completion first; in a browser the future resolves from the event loop.

pub mod kernel;
pub mod kernels;
mod meta;

use std::any::TypeId;
use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::future::Future;
use std::rc::Rc;
use std::sync::{Arc, Mutex};

use crate::backend::{Backend, Coef, GlmBackend, HostMatrix, LossRows, Rows, TmatmulOut};
use crate::{Error, Result};
pub use bilevel_shaders::WORKGROUP_SIZE;
/// For [`kernel_params!`](crate::kernel_params), so a user crate needs no bytemuck of its own.
#[doc(hidden)]
pub use bytemuck;
use kernel::Reflection;
pub use kernel::{Access, Kernel, KernelParams, ParamField, ParamScalar, ParamType};

/// Bytes per dispatch in the uniform arena (WebGPU's minimum uniform offset alignment).
const PARAM_SLOT: usize = 256;
/// Dispatches recorded before an automatic submit.
const ARENA_SLOTS: usize = 1024;
/// Device scalars available at once.
const SCALAR_SLOTS: u32 = 4096;
/// Workgroups of the first reduction pass (the second pass reduces these partials).
pub(crate) const REDUCE_PARTIALS: u32 = 256;

/// Which adapter to use.
#[derive(Clone, Debug, Default)]
pub struct GpuOptions {
    /// Use the first adapter whose name contains this (case-insensitive), e.g. "llvmpipe";
    /// `None` asks wgpu for its high-performance default.
    pub adapter: Option<String>,
}

/// One adapter wgpu can see.
#[derive(Clone, Debug, serde::Serialize)]
pub struct AdapterSummary {
    /// The adapter's name (`llvmpipe (LLVM …)` for lavapipe).
    pub name: String,
    /// The graphics API: Vulkan, Metal, DX12, or the browser's WebGPU.
    pub backend: String,
    /// Discrete, integrated, virtual or CPU.
    pub device_type: String,
    /// The driver's name and version, where the API reports them.
    pub driver: String,
}

fn summary(info: &wgpu::AdapterInfo) -> AdapterSummary {
    AdapterSummary {
        name: info.name.clone(),
        backend: format!("{:?}", info.backend),
        device_type: format!("{:?}", info.device_type),
        driver: format!("{} {}", info.driver, info.driver_info).trim().to_string(),
    }
}

fn instance_descriptor() -> wgpu::InstanceDescriptor {
    let mut desc = wgpu::InstanceDescriptor::new_without_display_handle();
    // Compute needs Vulkan, Metal, DX12 or WebGPU; GL/WebGL have no (usable) compute shaders.
    desc.backends = wgpu::Backends::PRIMARY;
    desc
}

/// Lists the adapters wgpu finds on this machine (native only; a browser exposes one).
#[cfg(not(target_arch = "wasm32"))]
pub async fn list_adapters() -> Vec<AdapterSummary> {
    let instance = wgpu::Instance::new(instance_descriptor());
    instance.enumerate_adapters(wgpu::Backends::PRIMARY).await.iter().map(|a| summary(&a.get_info())).collect()
}

/// A buffer from a pool, with a stable id for bind-group caching.
struct Slab {
    buffer: wgpu::Buffer,
    id: u64,
    size: u64,
}

/// Buffers by usage class and size. Dropped slabs wait in `retired` until the next submit.
#[derive(Default)]
struct Pool {
    free: HashMap<(u8, u64), Vec<Slab>>,
    retired: Vec<(u8, Slab)>,
    allocated_bytes: u64,
    peak_bytes: u64,
    next_id: u64,
}

const CLASS_STORAGE: u8 = 0;
const CLASS_STAGING: u8 = 1;

impl Pool {
    fn take(&mut self, device: &wgpu::Device, class: u8, size: u64, label: &str) -> Slab {
        if let Some(slab) = self.free.get_mut(&(class, size)).and_then(|v| v.pop()) {
            return slab;
        }
        let usage = match class {
            CLASS_STORAGE => wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_DST | wgpu::BufferUsages::COPY_SRC,
            _ => wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
        };
        let buffer = device.create_buffer(&wgpu::BufferDescriptor { label: Some(label), size, usage, mapped_at_creation: false });
        self.next_id += 1;
        self.allocated_bytes += size;
        self.peak_bytes = self.peak_bytes.max(self.allocated_bytes);
        Slab { buffer, id: self.next_id, size }
    }
    /// Called after a submit: retired slabs may be overwritten from now on.
    fn recycle(&mut self) {
        for (class, slab) in self.retired.drain(..) {
            self.free.entry((class, slab.size)).or_default().push(slab);
        }
    }
}

/// A resident f32 vector.
pub struct GpuVector {
    slab: Option<Slab>,
    len: usize,
    pool: Rc<RefCell<Pool>>,
}

impl GpuVector {
    fn buffer(&self) -> &wgpu::Buffer {
        &self.slab.as_ref().expect("live vector").buffer
    }
    fn id(&self) -> u64 {
        self.slab.as_ref().expect("live vector").id
    }
    /// Entries.
    pub fn len(&self) -> usize {
        self.len
    }
    /// Whether it has no entries.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

impl Drop for GpuVector {
    fn drop(&mut self) {
        if let Some(slab) = self.slab.take() {
            self.pool.borrow_mut().retired.push((CLASS_STORAGE, slab));
        }
    }
}

/// A resident data matrix: dense row-major f32, or sparse as CSR (for `X_B W`) plus CSC (for
/// `X_Bᵀ E`) with a buffer of batch positions per data row.
pub enum GpuMatrix {
    /// Row-major f32 entries.
    Dense {
        /// `rows × cols` entries.
        data: GpuVector,
        /// Rows (samples).
        rows: usize,
        /// Columns (features).
        cols: usize,
    },
    /// CSR and CSC of the same matrix.
    Sparse {
        /// Row offsets, column indices and values, row by row.
        csr: Box<[GpuVector; 3]>,
        /// Column offsets, row indices and values, column by column.
        csc: Box<[GpuVector; 3]>,
        /// Each data row's position in the current batch (rebuilt per batch), for the CSC walk.
        pos: GpuVector,
        /// Rows (samples).
        rows: usize,
        /// Columns (features).
        cols: usize,
    },
}

impl GpuMatrix {
    pub(crate) fn shape(&self) -> (usize, usize) {
        match self {
            GpuMatrix::Dense { rows, cols, .. } | GpuMatrix::Sparse { rows, cols, .. } => (*rows, *cols),
        }
    }
}

/// A resident set of u32 row indices.
pub struct GpuIndices {
    data: GpuVector,
}

/// Free and retired slots of the shared scalar buffer.
#[derive(Default)]
struct SlotAlloc {
    next: u32,
    free: Vec<u32>,
    retired: Vec<u32>,
}

/// A device scalar: one slot of the backend's `scalars` buffer.
pub struct GpuScalar {
    slot: u32,
    alloc: Rc<RefCell<SlotAlloc>>,
}

impl Drop for GpuScalar {
    fn drop(&mut self) {
        self.alloc.borrow_mut().retired.push(self.slot);
    }
}

/// A buffer passed to one storage binding of a dispatch: [`GpuVector::binding`],
/// [`GpuIndices::binding`].
#[derive(Clone, Copy)]
pub struct Binding<'a> {
    buffer: &'a wgpu::Buffer,
    id: u64,
}

enum Op {
    Dispatch { pipeline: wgpu::ComputePipeline, bind_group: wgpu::BindGroup, offset: u32, groups: (u32, u32) },
    Copy { src: wgpu::Buffer, src_offset: u64, dst: wgpu::Buffer, size: u64 },
}

/// A pipeline and what it was checked against: its params type and buffer list.
struct Pipeline {
    pipeline: wgpu::ComputePipeline,
    layout: wgpu::BindGroupLayout,
    params: TypeId,
    buffers: &'static [(u32, Access)],
    /// Invocations per workgroup, from the shader.
    threads: u32,
}

/// A dispatch's grid: invocations of a 1-D kernel, or workgroups.
#[derive(Clone, Copy)]
enum Grid {
    Invocations(u32),
    Groups(u32, u32),
}

/// Work recorded since the last submit, and the caches.
#[derive(Default)]
struct Recorder {
    ops: Vec<Op>,
    params: Vec<u8>,
    dispatches: usize,
    modules: HashMap<&'static str, wgpu::ShaderModule>,
    /// Each module parsed once by naga, or why it does not parse.
    reflections: HashMap<&'static str, Rc<std::result::Result<Reflection, String>>>,
    pipelines: HashMap<(&'static str, &'static str), Rc<Pipeline>>,
    bind_groups: HashMap<(&'static str, &'static str, Vec<u64>), wgpu::BindGroup>,
}

/// The wgpu backend. Single-threaded by design (the browser is), so it uses `RefCell`s.
pub struct GpuBackend {
    device: wgpu::Device,
    queue: wgpu::Queue,
    info: AdapterSummary,
    arena: wgpu::Buffer,
    scalars: wgpu::Buffer,
    partials: wgpu::Buffer,
    /// A small read-only buffer bound where a kernel has an unused optional input.
    dummy: wgpu::Buffer,
    pool: Rc<RefCell<Pool>>,
    slots: Rc<RefCell<SlotAlloc>>,
    rec: RefCell<Recorder>,
    submits: Cell<u64>,
    gpu_error: Arc<Mutex<Option<String>>>,
}

/// Ids of the backend's own fixed buffers in bind-group keys (pool ids start at 1).
const ID_SCALARS: u64 = u64::MAX;
const ID_PARTIALS: u64 = u64::MAX - 1;
const ID_DUMMY: u64 = u64::MAX - 2;

impl GpuBackend {
    /// Opens an adapter and a device. Fails with [`Error::NoAdapter`] when none is found (no
    /// GPU and no lavapipe natively, or a browser without WebGPU).
    pub async fn new(options: &GpuOptions) -> Result<Self> {
        #[cfg(target_arch = "wasm32")]
        let instance = wgpu::util::new_instance_with_webgpu_detection(instance_descriptor()).await;
        #[cfg(not(target_arch = "wasm32"))]
        let instance = wgpu::Instance::new(instance_descriptor());

        let adapter = match &options.adapter {
            #[cfg(not(target_arch = "wasm32"))]
            Some(want) => {
                let want = want.to_lowercase();
                let adapters = instance.enumerate_adapters(wgpu::Backends::PRIMARY).await;
                let names: Vec<String> = adapters.iter().map(|a| a.get_info().name).collect();
                adapters
                    .into_iter()
                    .find(|a| a.get_info().name.to_lowercase().contains(&want))
                    .ok_or_else(|| Error::NoAdapter(format!("no adapter matching {want:?} (found: {})", names.join(", "))))?
            }
            _ => instance
                .request_adapter(&wgpu::RequestAdapterOptions {
                    power_preference: wgpu::PowerPreference::HighPerformance,
                    ..Default::default()
                })
                .await
                .map_err(|e| Error::NoAdapter(no_adapter_hint(&e.to_string())))?,
        };
        let info = summary(&adapter.get_info());
        let (device, queue) = adapter
            .request_device(&wgpu::DeviceDescriptor {
                label: Some("bilevel.device"),
                required_limits: adapter.limits(),
                ..Default::default()
            })
            .await
            .map_err(|e| Error::Gpu(format!("request_device failed on {}: {e}", info.name)))?;

        // Validation errors become a returned error at the next read instead of a panic.
        let gpu_error = Arc::new(Mutex::new(None::<String>));
        let sink = gpu_error.clone();
        device.on_uncaptured_error(Arc::new(move |e: wgpu::Error| {
            let mut slot = sink.lock().unwrap_or_else(|p| p.into_inner());
            // wgpu's message spans several lines (the error and its causes): fold it into one.
            slot.get_or_insert_with(|| {
                let text = e.to_string();
                let parts: Vec<&str> = text.lines().map(str::trim).filter(|l| !l.is_empty()).collect();
                parts.join(" | ")
            });
        }));

        let storage = wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_DST | wgpu::BufferUsages::COPY_SRC;
        let make = |label: &str, size: u64, usage| {
            device.create_buffer(&wgpu::BufferDescriptor { label: Some(label), size, usage, mapped_at_creation: false })
        };
        let arena =
            make("bilevel.params_arena", (PARAM_SLOT * ARENA_SLOTS) as u64, wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST);
        let scalars = make("bilevel.scalars", SCALAR_SLOTS as u64 * 4, storage);
        let partials = make("bilevel.reduce_partials", REDUCE_PARTIALS as u64 * 4, storage);
        let dummy = make("bilevel.dummy", 16, storage);
        Ok(GpuBackend {
            device,
            queue,
            info,
            arena,
            scalars,
            partials,
            dummy,
            pool: Rc::default(),
            slots: Rc::default(),
            rec: RefCell::default(),
            submits: Cell::new(0),
            gpu_error,
        })
    }

    /// The adapter in use.
    pub fn adapter(&self) -> &AdapterSummary {
        &self.info
    }

    /// Bytes currently held by pooled buffers, and the peak (for memory tests and reports).
    pub fn allocated_bytes(&self) -> (u64, u64) {
        let p = self.pool.borrow();
        (p.allocated_bytes, p.peak_bytes)
    }

    /// Number of submits so far (each read costs one).
    pub fn submits(&self) -> u64 {
        self.submits.get()
    }

    fn storage(&self, bytes: u64, label: &str) -> Slab {
        // Storage bindings must be non-empty multiples of 4 bytes; round to 16 for pooling.
        let size = bytes.max(16).div_ceil(16) * 16;
        self.pool.borrow_mut().take(&self.device, CLASS_STORAGE, size, label)
    }

    /// Uploads u32 data into a fresh pooled buffer.
    fn u32s(&self, data: &[u32], label: &str) -> GpuVector {
        let slab = self.storage(data.len() as u64 * 4, label);
        if !data.is_empty() {
            self.queue.write_buffer(&slab.buffer, 0, bytemuck::cast_slice(data));
        }
        self.vector_slab(slab, data.len())
    }

    /// A pooled scratch vector of `len` entries whose contents are undefined (kernels fully
    /// write it before reading). Dropping it after recording is safe: the pool only reuses it
    /// after the next submit.
    pub(crate) fn scratch(&self, len: usize, label: &str) -> GpuVector {
        self.vector_slab(self.storage(len as u64 * 4, label), len)
    }

    fn vector_slab(&self, slab: Slab, len: usize) -> GpuVector {
        GpuVector { slab: Some(slab), len, pool: self.pool.clone() }
    }

    /// The storage binding of the scalar buffer, the reduction partials and the dummy input.
    pub(crate) fn scalars_binding(&self) -> Binding<'_> {
        Binding { buffer: &self.scalars, id: ID_SCALARS }
    }
    pub(crate) fn partials_binding(&self) -> Binding<'_> {
        Binding { buffer: &self.partials, id: ID_PARTIALS }
    }
    /// A small buffer to pass where a kernel has an optional input it does not read this time.
    pub fn unused_binding(&self) -> Binding<'_> {
        Binding { buffer: &self.dummy, id: ID_DUMMY }
    }

    /// Records the first error of this submit (returned by the next read).
    fn record_error(&self, message: String) {
        self.gpu_error.lock().unwrap_or_else(|p| p.into_inner()).get_or_insert(message);
    }

    /// `kernel`'s module reflection, parsed on first use.
    fn reflection(rec: &mut Recorder, kernel: &Kernel) -> Rc<std::result::Result<Reflection, String>> {
        rec.reflections.entry(kernel.module).or_insert_with(|| Rc::new(Reflection::parse(kernel.module, kernel.source))).clone()
    }

    /// Checks `kernel` with params `P` against its WGSL (see [`kernel`]) without recording
    /// anything: the check every first dispatch runs, for a caller that wants the error now.
    pub fn check_kernel<P: KernelParams>(&self, kernel: &Kernel) -> Result<()> {
        let reflection = Self::reflection(&mut self.rec.borrow_mut(), kernel);
        match &*reflection {
            Ok(r) => r.check::<P>(kernel).map(|_| ()).map_err(Error::Gpu),
            Err(e) => Err(Error::Gpu(e.clone())),
        }
    }

    /// The pipeline of `kernel`, created (after the reflection check) on its first dispatch.
    fn pipeline<P: KernelParams>(&self, rec: &mut Recorder, kernel: &Kernel) -> std::result::Result<Rc<Pipeline>, String> {
        if let Some(p) = rec.pipelines.get(&(kernel.module, kernel.entry)) {
            if p.params == TypeId::of::<P>() && p.buffers == kernel.buffers {
                return Ok(p.clone());
            }
        }
        let shape = match &*Self::reflection(rec, kernel) {
            Ok(r) => r.check::<P>(kernel)?,
            Err(e) => return Err(e.clone()),
        };
        if let Some(p) = rec.pipelines.get(&(kernel.module, kernel.entry)) {
            // Another params type or buffer list that also matches the WGSL: fine if the
            // layout is the same one.
            if p.buffers != kernel.buffers {
                return Err(format!(
                    "kernel {}::{}: dispatched with buffer list {:?}, but its pipeline was created with {:?}",
                    kernel.module, kernel.entry, kernel.buffers, p.buffers
                ));
            }
            return Ok(p.clone());
        }
        let device = &self.device;
        let module = rec.modules.entry(kernel.module).or_insert_with(|| {
            device.create_shader_module(wgpu::ShaderModuleDescriptor {
                label: Some(kernel.module),
                source: wgpu::ShaderSource::Wgsl(kernel.source.into()),
            })
        });
        let mut entries = vec![wgpu::BindGroupLayoutEntry {
            binding: 0,
            visibility: wgpu::ShaderStages::COMPUTE,
            ty: wgpu::BindingType::Buffer { ty: wgpu::BufferBindingType::Uniform, has_dynamic_offset: true, min_binding_size: None },
            count: None,
        }];
        for &(binding, access) in kernel.buffers {
            entries.push(wgpu::BindGroupLayoutEntry {
                binding,
                visibility: wgpu::ShaderStages::COMPUTE,
                ty: wgpu::BindingType::Buffer {
                    ty: wgpu::BufferBindingType::Storage { read_only: access == Access::Read },
                    has_dynamic_offset: false,
                    min_binding_size: None,
                },
                count: None,
            });
        }
        let label = format!("{}::{}", kernel.module, kernel.entry);
        let layout = device.create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor { label: Some(&label), entries: &entries });
        let pipeline_layout = device.create_pipeline_layout(&wgpu::PipelineLayoutDescriptor {
            label: Some(&label),
            bind_group_layouts: &[Some(&layout)],
            immediate_size: 0,
        });
        let pipeline = device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
            label: Some(&label),
            layout: Some(&pipeline_layout),
            module,
            entry_point: Some(kernel.entry),
            compilation_options: Default::default(),
            cache: None,
        });
        let p = Rc::new(Pipeline { pipeline, layout, params: TypeId::of::<P>(), buffers: kernel.buffers, threads: shape.threads });
        rec.pipelines.insert((kernel.module, kernel.entry), p.clone());
        Ok(p)
    }

    /// Records one dispatch of a 1-D `kernel` over `invocations` threads (workgroups of the
    /// shader's size, spilling into y past 65,535 of them: the shader rebuilds its linear index
    /// as `gid.x + gid.y · num_workgroups.x · workgroup size`), with `params` in its uniform
    /// slot and `buffers` at the bindings of `kernel.buffers`, in that order. A kernel that
    /// does not match its WGSL, or a wrong number of buffers, is not dispatched: the error is
    /// returned by the next read.
    pub fn dispatch<P: KernelParams>(&self, kernel: &Kernel, params: &P, buffers: &[Binding<'_>], invocations: u32) {
        self.record(kernel, params, buffers, Grid::Invocations(invocations))
    }

    /// [`dispatch`](Self::dispatch) over an explicit grid of `(x, y)` workgroups.
    pub fn dispatch_groups<P: KernelParams>(&self, kernel: &Kernel, params: &P, buffers: &[Binding<'_>], groups: (u32, u32)) {
        self.record(kernel, params, buffers, Grid::Groups(groups.0, groups.1))
    }

    fn record<P: KernelParams>(&self, kernel: &Kernel, params: &P, buffers: &[Binding<'_>], grid: Grid) {
        if buffers.len() != kernel.buffers.len() {
            let (given, listed) = (buffers.len(), kernel.buffers.len());
            self.record_error(format!("kernel {}::{}: {given} buffers passed, its buffer list has {listed}", kernel.module, kernel.entry));
            return;
        }
        if self.rec.borrow().dispatches == ARENA_SLOTS {
            self.flush();
        }
        let mut rec = self.rec.borrow_mut();
        let pipeline = match self.pipeline::<P>(&mut rec, kernel) {
            Ok(p) => p,
            Err(e) => {
                drop(rec);
                self.record_error(e);
                return;
            }
        };
        let groups = match grid {
            Grid::Groups(x, y) => (x, y),
            Grid::Invocations(n) => kernels::groups_2d(n.div_ceil(pipeline.threads.max(1)) as usize),
        };
        let key = (kernel.module, kernel.entry, buffers.iter().map(|b| b.id).collect::<Vec<_>>());
        let bind_group = match rec.bind_groups.get(&key) {
            Some(bg) => bg.clone(),
            None => {
                let mut entries = vec![wgpu::BindGroupEntry {
                    binding: 0,
                    resource: wgpu::BindingResource::Buffer(wgpu::BufferBinding {
                        buffer: &self.arena,
                        offset: 0,
                        size: wgpu::BufferSize::new(PARAM_SLOT as u64),
                    }),
                }];
                for (&(binding, _), b) in kernel.buffers.iter().zip(buffers) {
                    entries.push(wgpu::BindGroupEntry { binding, resource: b.buffer.as_entire_binding() });
                }
                let bg = self.device.create_bind_group(&wgpu::BindGroupDescriptor {
                    label: Some(kernel.entry),
                    layout: &pipeline.layout,
                    entries: &entries,
                });
                rec.bind_groups.insert(key, bg.clone());
                bg
            }
        };
        // The reflection check bounds the params by one slot.
        let offset = rec.params.len() as u32;
        rec.params.extend_from_slice(bytemuck::bytes_of(params));
        rec.params.resize(offset as usize + PARAM_SLOT, 0);
        rec.dispatches += 1;
        rec.ops.push(Op::Dispatch { pipeline: pipeline.pipeline.clone(), bind_group, offset, groups });
    }

    fn take_error(&self) -> Result<()> {
        match self.gpu_error.lock().unwrap_or_else(|p| p.into_inner()).take() {
            Some(e) => Err(Error::Gpu(e)),
            None => Ok(()),
        }
    }

    /// Copies `size` bytes at `offset` of `src` into a pooled staging buffer, submits, and
    /// resolves to the bytes once the GPU is done.
    fn read_bytes(&self, src: &wgpu::Buffer, offset: u64, size: u64) -> impl Future<Output = Result<Vec<u8>>> + use<> {
        let padded = size.max(4).div_ceil(4) * 4;
        let staging = self.pool.borrow_mut().take(&self.device, CLASS_STAGING, padded, "bilevel.staging");
        self.rec.borrow_mut().ops.push(Op::Copy { src: src.clone(), src_offset: offset, dst: staging.buffer.clone(), size: padded });
        self.flush();
        let (tx, rx) = futures_channel::oneshot::channel();
        staging.buffer.slice(..padded).map_async(wgpu::MapMode::Read, move |r| {
            let _ = tx.send(r);
        });
        // Natively, drive the device until the copy (and the map callback) has happened. In a
        // browser the callback fires from the event loop while the caller awaits.
        #[cfg(not(target_arch = "wasm32"))]
        let poll = self.device.poll(wgpu::PollType::wait_indefinitely()).map_err(|e| Error::Gpu(e.to_string()));
        #[cfg(target_arch = "wasm32")]
        let poll: Result<()> = Ok(());
        let early = self.take_error();
        let pool = self.pool.clone();
        async move {
            early?;
            poll.map(|_| ())?;
            let mapped = rx.await.map_err(|_| Error::Gpu("readback cancelled".into()))?;
            mapped.map_err(|e| Error::Gpu(format!("readback failed: {e}")))?;
            let bytes = {
                let view = staging.buffer.slice(..padded).get_mapped_range().map_err(|e| Error::Gpu(e.to_string()))?;
                view[..size as usize].to_vec()
            };
            staging.buffer.unmap();
            pool.borrow_mut().retired.push((CLASS_STAGING, staging));
            Ok(bytes)
        }
    }
}

fn no_adapter_hint(e: &str) -> String {
    if cfg!(target_arch = "wasm32") {
        format!("{e}; this browser does not expose WebGPU (try a recent Chrome/Edge, or enable WebGPU)")
    } else {
        format!("{e}; install a Vulkan driver (on Debian without a GPU: apt-get install mesa-vulkan-drivers libvulkan1)")
    }
}

fn f32s(data: &[f64]) -> Vec<f32> {
    data.iter().map(|&v| v as f32).collect()
}

impl Backend for GpuBackend {
    type Vector = GpuVector;
    type Scalar = GpuScalar;
    type Matrix = GpuMatrix;
    type Indices = GpuIndices;

    fn describe(&self) -> String {
        format!("gpu ({}, {}, {})", self.info.name, self.info.backend, self.info.device_type)
    }

    fn zeros(&self, len: usize, label: &str) -> GpuVector {
        let mut v = self.vector_slab(self.storage(len as u64 * 4, label), len);
        self.fill(Coef::c(0.0), &mut v);
        v
    }
    fn vector_from(&self, data: &[f64], label: &str) -> GpuVector {
        let slab = self.storage(data.len() as u64 * 4, label);
        self.queue.write_buffer(&slab.buffer, 0, bytemuck::cast_slice(&f32s(data)));
        self.vector_slab(slab, data.len())
    }
    fn scalar(&self, _label: &str) -> GpuScalar {
        let mut a = self.slots.borrow_mut();
        let slot = a.free.pop().unwrap_or_else(|| {
            a.next += 1;
            assert!(a.next <= SCALAR_SLOTS, "more than {SCALAR_SLOTS} live device scalars");
            a.next - 1
        });
        GpuScalar { slot, alloc: self.slots.clone() }
    }
    fn matrix_from(&self, m: &HostMatrix, label: &str) -> GpuMatrix {
        match m {
            HostMatrix::Dense { rows, cols, data } => {
                assert_eq!(data.len(), rows * cols, "matrix data has the wrong length");
                GpuMatrix::Dense { data: self.vector_from(data, label), rows: *rows, cols: *cols }
            }
            HostMatrix::Csr { rows, cols, indptr, indices, values } => {
                let (colptr, rowidx, cvals) = m.csc();
                GpuMatrix::Sparse {
                    csr: Box::new([
                        self.u32s(indptr, "csr.indptr"),
                        self.u32s(indices, "csr.indices"),
                        self.vector_from(values, "csr.values"),
                    ]),
                    csc: Box::new([
                        self.u32s(&colptr, "csc.colptr"),
                        self.u32s(&rowidx, "csc.rowidx"),
                        self.vector_from(&cvals, "csc.values"),
                    ]),
                    pos: self.vector_slab(self.storage(*rows as u64 * 4, "csc.batch_pos"), *rows),
                    rows: *rows,
                    cols: *cols,
                }
            }
        }
    }
    fn indices(&self, idx: &[u32]) -> GpuIndices {
        GpuIndices { data: self.u32s(idx, "bilevel.batch_indices") }
    }
    fn vector_len(&self, v: &GpuVector) -> usize {
        v.len
    }
    fn indices_len(&self, idx: &GpuIndices) -> usize {
        idx.data.len
    }
    fn matrix_shape(&self, m: &GpuMatrix) -> (usize, usize) {
        m.shape()
    }

    fn flush(&self) {
        let mut rec = self.rec.borrow_mut();
        if !rec.ops.is_empty() {
            self.queue.write_buffer(&self.arena, 0, &rec.params);
            let mut encoder = self.device.create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some("bilevel.flush") });
            let ops = std::mem::take(&mut rec.ops);
            let mut i = 0;
            while i < ops.len() {
                if let Op::Copy { src, src_offset, dst, size } = &ops[i] {
                    encoder.copy_buffer_to_buffer(src, *src_offset, dst, 0, *size);
                    i += 1;
                    continue;
                }
                // One compute pass per run of dispatches.
                let mut pass =
                    encoder.begin_compute_pass(&wgpu::ComputePassDescriptor { label: Some("bilevel.pass"), timestamp_writes: None });
                while let Some(Op::Dispatch { pipeline, bind_group, offset, groups }) = ops.get(i) {
                    pass.set_pipeline(pipeline);
                    pass.set_bind_group(0, bind_group, &[*offset]);
                    pass.dispatch_workgroups(groups.0, groups.1, 1);
                    i += 1;
                }
            }
            self.queue.submit([encoder.finish()]);
            self.submits.set(self.submits.get() + 1);
            rec.params.clear();
            rec.dispatches = 0;
        }
        drop(rec);
        // Everything retired before this submit is safe to overwrite from now on.
        self.pool.borrow_mut().recycle();
        let mut slots = self.slots.borrow_mut();
        let retired = std::mem::take(&mut slots.retired);
        slots.free.extend(retired);
    }

    fn read_vector(&self, v: &GpuVector) -> impl Future<Output = Result<Vec<f64>>> {
        let bytes = self.read_bytes(v.buffer(), 0, v.len as u64 * 4);
        async move { Ok(bytemuck::cast_slice::<u8, f32>(&bytes.await?).iter().map(|&x| x as f64).collect()) }
    }
    fn read_scalar(&self, s: &GpuScalar) -> impl Future<Output = Result<f64>> {
        let bytes = self.read_bytes(&self.scalars, s.slot as u64 * 4, 4);
        async move { Ok(bytemuck::cast_slice::<u8, f32>(&bytes.await?)[0] as f64) }
    }

    fn axpby(&self, a: Coef<'_, GpuScalar>, x: &GpuVector, b: Coef<'_, GpuScalar>, y: &mut GpuVector) {
        kernels::blas1::axpby(self, a, x, b, y)
    }
    fn scale(&self, b: Coef<'_, GpuScalar>, y: &mut GpuVector) {
        kernels::blas1::scale(self, b, y)
    }
    fn fill(&self, a: Coef<'_, GpuScalar>, y: &mut GpuVector) {
        kernels::blas1::fill(self, a, y)
    }
    fn dot(&self, x: &GpuVector, y: &GpuVector, scale: f64, out: &GpuScalar, accumulate: bool) {
        kernels::reduce::dot(self, x, y, scale, out, accumulate)
    }
    fn adam(&self, g: &GpuVector, m: &mut GpuVector, v: &mut GpuVector, x: &mut GpuVector, step: crate::optim::AdamStep) {
        kernels::optim::adam(self, g, m, v, x, step)
    }
    fn sum(&self, x: &GpuVector, scale: f64, out: &GpuScalar, accumulate: bool) {
        kernels::reduce::sum(self, x, scale, out, accumulate)
    }
    fn gather_matmul(&self, x: &GpuMatrix, rows: Rows<'_, GpuIndices>, w: &GpuVector, c: usize, z: &mut GpuVector) {
        match x {
            GpuMatrix::Dense { .. } => kernels::dense::gather_matmul(self, x, rows, w, c, z),
            GpuMatrix::Sparse { .. } => kernels::sparse::gather_matmul(self, x, rows, w, c, z),
        }
    }
    fn gather_tmatmul(
        &self,
        x: &GpuMatrix,
        rows: Rows<'_, GpuIndices>,
        e: &GpuVector,
        c: usize,
        terms: TmatmulOut<'_, Self>,
        out: &mut GpuVector,
    ) {
        match x {
            GpuMatrix::Dense { .. } => kernels::dense::gather_tmatmul(self, x, rows, e, c, terms, out),
            GpuMatrix::Sparse { .. } => kernels::sparse::gather_tmatmul(self, x, rows, e, c, terms, out),
        }
    }
}

impl GlmBackend for GpuBackend {
    fn loss_residual(&self, on: LossRows<'_, Self>, z: &GpuVector, scale: f64, r: &mut GpuVector, loss: Option<&mut GpuVector>) {
        kernels::loss::residual(self, on, z, scale, r, loss)
    }
    fn loss_curvature(&self, on: LossRows<'_, Self>, z: &GpuVector, u: &GpuVector, scale: f64, m: &mut GpuVector) {
        kernels::loss::curvature(self, on, z, u, scale, m)
    }
    fn rowdot_sigmoid_scatter(
        &self,
        ab: [&GpuVector; 2],
        rows: Rows<'_, GpuIndices>,
        c: usize,
        lambda: &GpuVector,
        scale: f64,
        out: &mut GpuVector,
    ) {
        kernels::loss::rowdot_sigmoid_scatter(self, ab, rows, c, lambda, scale, out)
    }
    fn exp_rowdot(&self, lambda: &GpuVector, a: &GpuVector, b: &GpuVector, c: usize, scale: f64, out: &mut GpuVector) {
        kernels::loss::exp_rowdot(self, lambda, a, b, c, scale, out)
    }
}

impl GpuVector {
    /// This vector as a buffer of a [`GpuBackend::dispatch`].
    pub fn binding(&self) -> Binding<'_> {
        Binding { buffer: self.buffer(), id: self.id() }
    }
}
impl GpuIndices {
    /// Indices held.
    pub fn len(&self) -> usize {
        self.data.len
    }
    /// Whether it holds none.
    pub fn is_empty(&self) -> bool {
        self.data.len == 0
    }
    /// These indices (u32) as a buffer of a [`GpuBackend::dispatch`].
    pub fn binding(&self) -> Binding<'_> {
        self.data.binding()
    }
}
impl GpuScalar {
    pub(crate) fn slot(&self) -> u32 {
        self.slot
    }
}
