//! The key/value cache of one sequence, laid out in *cells* as llama.cpp's `llama_kv_cache` lays
//! out its own, so that attention visits the same cells in the same order and rounds the same way.
//!
//! Layers come in groups that share one cell table: the full-context layers (`n_ctx` cells) and
//! the sliding-window layers (a ring of `min(pad(n_ctx), pad(window + 512, 256))` cells, as
//! llama.cpp's iSWA cache sizes it for the default 512-token ubatch). A token's cell is chosen by
//! [`Cells::find_slot`], which mirrors llama.cpp's `find_slot` for one sequence: scan from the
//! head, take empty cells and, on a window layer, cells whose token no query can see any more.
//! Each layer stores its rows (`[cell][kv_head][dim]`) as f16 (the default), f32 or ggml's
//! `block_q8_0`, preallocated zeroed so the OS commits pages only as cells are first written.
//!
//! This module keeps positions and rows; it does not compute attention (`cpu::attention`) nor
//! RoPE (the model's forward applies the context-shift rotation through [`KvCache::take_shifts`]).

use half::f16;
use half::slice::{HalfBitsSliceExt, HalfFloatSliceExt};
use std::fmt;
use std::str::FromStr;

use crate::quant::q8_0;

/// llama.cpp's default physical batch (`n_ubatch`); the forward pass runs prompts in ubatches
/// of this size, and the window ring leaves this much room beyond the window.
pub const N_UBATCH: usize = 512;

/// llama.cpp pads the context and the window ring to multiples of this.
const CELL_PAD: usize = 256;

/// How keys or values are stored (`--cache-type-k/--cache-type-v`, llama.cpp's names).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum CacheType {
    #[default]
    F16,
    F32,
    Q8_0,
}

impl CacheType {
    pub fn name(self) -> &'static str {
        match self {
            CacheType::F16 => "f16",
            CacheType::F32 => "f32",
            CacheType::Q8_0 => "q8_0",
        }
    }

    /// Bytes of one row of `width` values (`width` a multiple of 32 for q8_0).
    pub fn row_bytes(self, width: usize) -> usize {
        match self {
            CacheType::F16 => width * 2,
            CacheType::F32 => width * 4,
            CacheType::Q8_0 => width / q8_0::QK * 34,
        }
    }
}

impl fmt::Display for CacheType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for CacheType {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "f16" => Ok(CacheType::F16),
            "f32" => Ok(CacheType::F32),
            "q8_0" => Ok(CacheType::Q8_0),
            _ => Err(format!("unknown cache type '{s}' (f16, f32 or q8_0)")),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum KvError {
    #[error(
        "cache type q8_0 needs rows of whole 32-value blocks, but a head has {head_dim} values"
    )]
    Q8Width { head_dim: usize },
    #[error("no free KV cell for {n_tokens} tokens in a cache of {size} cells")]
    NoSlot { n_tokens: usize, size: usize },
}

/// Storage of one layer's keys or values.
enum Rows {
    /// f16 bits (a `u16` buffer, so that `vec!` can take zeroed pages from the allocator).
    F16(Vec<u16>),
    F32(Vec<f32>),
    Q8_0(Vec<u8>),
}

impl Rows {
    fn new(ty: CacheType, cells: usize, width: usize) -> Rows {
        match ty {
            CacheType::F16 => Rows::F16(vec![0; cells * width]),
            CacheType::F32 => Rows::F32(vec![0.0; cells * width]),
            CacheType::Q8_0 => Rows::Q8_0(vec![0; cells * ty.row_bytes(width)]),
        }
    }

    fn bytes(&self) -> usize {
        match self {
            Rows::F16(v) => v.len() * 2,
            Rows::F32(v) => v.len() * 4,
            Rows::Q8_0(v) => v.len(),
        }
    }
}

/// A read view of one layer's keys or values: `width` values per cell.
#[derive(Clone, Copy)]
pub enum RowsRef<'a> {
    F16(&'a [f16]),
    F32(&'a [f32]),
    Q8_0(&'a [u8]),
}

impl<'a> RowsRef<'a> {
    pub fn cache_type(&self) -> CacheType {
        match self {
            RowsRef::F16(_) => CacheType::F16,
            RowsRef::F32(_) => CacheType::F32,
            RowsRef::Q8_0(_) => CacheType::Q8_0,
        }
    }
}

/// Keys and values of one layer.
pub struct LayerCache {
    k: Rows,
    v: Rows,
    k_width: usize,
    v_width: usize,
    group: usize,
}

impl LayerCache {
    /// Writes row `src` (`k_width` or `v_width` values) into `cell`, rounding to the storage type.
    fn write(rows: &mut Rows, width: usize, cell: usize, src: &[f32]) {
        match rows {
            Rows::F16(b) => {
                let dst = b[cell * width..][..width].reinterpret_cast_mut::<f16>();
                dst.convert_from_f32_slice(src);
            }
            Rows::F32(b) => b[cell * width..][..width].copy_from_slice(src),
            Rows::Q8_0(b) => {
                let rb = CacheType::Q8_0.row_bytes(width);
                q8_0::quantize_row(src, &mut b[cell * rb..][..rb]);
            }
        }
    }

    fn read(rows: &Rows, width: usize, cell: usize, dst: &mut [f32]) {
        match rows {
            Rows::F16(b) => b[cell * width..][..width]
                .reinterpret_cast::<f16>()
                .convert_to_f32_slice(dst),
            Rows::F32(b) => dst.copy_from_slice(&b[cell * width..][..width]),
            Rows::Q8_0(b) => {
                let rb = CacheType::Q8_0.row_bytes(width);
                q8_0::dequantize_row(&b[cell * rb..][..rb], dst);
            }
        }
    }

    fn view(rows: &Rows) -> RowsRef<'_> {
        match rows {
            Rows::F16(b) => RowsRef::F16(b.reinterpret_cast::<f16>()),
            Rows::F32(b) => RowsRef::F32(b),
            Rows::Q8_0(b) => RowsRef::Q8_0(b),
        }
    }

    pub fn write_k(&mut self, cell: usize, k: &[f32]) {
        Self::write(&mut self.k, self.k_width, cell, k);
    }

    pub fn write_v(&mut self, cell: usize, v: &[f32]) {
        Self::write(&mut self.v, self.v_width, cell, v);
    }

    /// The key row of `cell` as f32 (`k_width` values).
    pub fn read_k(&self, cell: usize, dst: &mut [f32]) {
        Self::read(&self.k, self.k_width, cell, dst);
    }

    /// The value row of `cell` as f32 (`v_width` values).
    pub fn read_v(&self, cell: usize, dst: &mut [f32]) {
        Self::read(&self.v, self.v_width, cell, dst);
    }

    pub fn keys(&self) -> RowsRef<'_> {
        Self::view(&self.k)
    }

    pub fn values(&self) -> RowsRef<'_> {
        Self::view(&self.v)
    }

    /// Which cell table (see [`KvCache::cells`]) this layer's rows follow.
    pub fn group(&self) -> usize {
        self.group
    }
}

/// Positions held by the cells of one group, for a single sequence: `pos[i]` is the position of
/// the token in cell `i`, or -1 for an empty cell.
#[derive(Clone, Debug)]
pub struct Cells {
    pos: Vec<i32>,
    /// Pending RoPE shift per cell (the sum of the deltas since the last rotation).
    shift: Vec<i32>,
    /// Where the next search for free cells starts (llama.cpp's `head`).
    head: usize,
    used: usize,
    /// Window of the layers of this group; `None` = full context.
    window: Option<usize>,
}

impl Cells {
    fn new(size: usize, window: Option<usize>) -> Cells {
        Cells {
            pos: vec![-1; size],
            shift: vec![0; size],
            head: 0,
            used: 0,
            window,
        }
    }

    /// Cell positions (-1 = empty), in cell order.
    pub fn positions(&self) -> &[i32] {
        &self.pos
    }

    pub fn size(&self) -> usize {
        self.pos.len()
    }

    pub fn window(&self) -> Option<usize> {
        self.window
    }

    /// One past the last used cell: attention need not look further.
    pub fn used_max_p1(&self) -> usize {
        self.pos.iter().rposition(|&p| p >= 0).map_or(0, |i| i + 1)
    }

    fn pos_min(&self) -> Option<i32> {
        self.pos.iter().copied().filter(|&p| p >= 0).min()
    }

    fn pos_max(&self) -> Option<i32> {
        self.pos.iter().copied().max().filter(|&p| p >= 0)
    }

    /// llama.cpp's `is_masked_swa` for the standard window: a token at `p1` cannot see `p0`.
    fn masked(window: Option<usize>, p0: i32, p1: i32) -> bool {
        window.is_some_and(|w| i64::from(p1) - i64::from(p0) >= w as i64)
    }

    /// Cells for `n` new tokens, chosen as llama.cpp's `find_slot` (non-contiguous) does for one
    /// sequence: start at the head (or at 0 when many cells before it are free) and take, cell
    /// by cell with wrap-around, empty cells and cells of a token outside every future window.
    fn find_slot(&self, n: usize) -> Result<Vec<usize>, KvError> {
        let size = self.size();
        let no_slot = KvError::NoSlot { n_tokens: n, size };
        if n > size {
            return Err(no_slot);
        }
        let mut head = self.head;
        if head > self.used + 2 * n {
            head = 0;
        }
        let next = self.pos_max().map_or(0, |p| p + 1);
        let mut out = Vec::with_capacity(n);
        let mut tested = 0;
        while out.len() < n {
            if tested >= size {
                return Err(no_slot);
            }
            if head >= size {
                head = 0;
            }
            let p = self.pos[head];
            if p < 0 || Self::masked(self.window, p, next) {
                out.push(head);
            }
            head += 1;
            tested += 1;
        }
        Ok(out)
    }

    /// Places tokens at positions `pos0..` into `cells` (llama.cpp's `apply_ubatch`): evicted
    /// tokens take every older position with them, so what stays is a contiguous run.
    fn apply(&mut self, cells: &[usize], pos0: usize) {
        let mut max_rm = -1;
        for (t, &c) in cells.iter().enumerate() {
            if self.pos[c] >= 0 {
                max_rm = max_rm.max(self.pos[c]);
                self.pos[c] = -1;
                self.shift[c] = 0;
                self.used -= 1;
            }
            self.pos[c] = (pos0 + t) as i32;
            self.used += 1;
        }
        if max_rm >= 0 && self.pos_min().is_some_and(|m| m <= max_rm) {
            self.remove(0, max_rm + 1);
        }
        if let Some(&last) = cells.last() {
            self.head = last + 1;
        }
    }

    /// Empties the cells of positions `p0..p1` (llama.cpp's `seq_rm`).
    fn remove(&mut self, p0: i32, p1: i32) {
        let mut first = None;
        for (i, p) in self.pos.iter_mut().enumerate() {
            if *p >= p0 && *p < p1 {
                *p = -1;
                self.shift[i] = 0;
                self.used -= 1;
                first.get_or_insert(i);
            }
        }
        if let Some(f) = first {
            self.head = self.head.min(f);
        }
    }

    /// Adds `delta` to positions `p0..p1` (llama.cpp's `seq_add`), remembering the shift for the
    /// keys' rotation; a position that falls below 0 empties its cell.
    fn add(&mut self, p0: i32, p1: i32, delta: i32) {
        if delta == 0 || p0 == p1 {
            return;
        }
        let mut freed = None;
        for i in 0..self.pos.len() {
            let p = self.pos[i];
            if p >= 0 && p >= p0 && p < p1 {
                self.pos[i] = p + delta;
                self.shift[i] += delta;
                if self.pos[i] < 0 {
                    self.pos[i] = -1;
                    self.shift[i] = 0;
                    self.used -= 1;
                    freed.get_or_insert(i);
                }
            }
        }
        self.head = freed.unwrap_or(0);
    }
}

/// The cache's storage types (`--cache-type-k`, `--cache-type-v`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KvOptions {
    pub type_k: CacheType,
    pub type_v: CacheType,
}

/// What [`KvCache::new`] needs to know about the model.
#[derive(Clone, Debug)]
pub struct KvLayout {
    /// Per layer: whether it is a sliding-window layer.
    pub swa_layers: Vec<bool>,
    pub window: Option<usize>,
    pub k_width: usize,
    pub v_width: usize,
    pub head_dim: usize,
    pub head_dim_v: usize,
}

/// The caches of all layers of one sequence, holding positions `0..len()`.
pub struct KvCache {
    layers: Vec<LayerCache>,
    /// Group 0: full-context layers; group 1: sliding-window layers (absent without a window).
    groups: Vec<Cells>,
    n_ctx: usize,
    n_past: usize,
    type_k: CacheType,
    type_v: CacheType,
    /// Context shifts done, as `(keep, discard)`, for callers that mirror the token list.
    shift_log: Vec<(usize, usize)>,
}

/// Cells of the window ring for a context of `n_ctx` (llama.cpp's iSWA sizing, n_seq = 1).
pub fn swa_cells(n_ctx: usize, window: usize) -> usize {
    let base = n_ctx.next_multiple_of(CELL_PAD);
    base.min(window + N_UBATCH).next_multiple_of(CELL_PAD)
}

/// Bytes [`KvCache::new`] allocates for `layout` at `n_ctx` (what `infer info -c` reports):
/// full-context layers hold `n_ctx` cells, window layers [`swa_cells`].
pub fn estimate_bytes(
    layout: &KvLayout,
    n_ctx: usize,
    type_k: CacheType,
    type_v: CacheType,
) -> usize {
    let row = type_k.row_bytes(layout.k_width) + type_v.row_bytes(layout.v_width);
    layout
        .swa_layers
        .iter()
        .map(|&swa| match (swa, layout.window) {
            (true, Some(w)) => swa_cells(n_ctx, w) * row,
            _ => n_ctx * row,
        })
        .sum()
}

impl KvCache {
    pub fn new(
        layout: &KvLayout,
        n_ctx: usize,
        type_k: CacheType,
        type_v: CacheType,
    ) -> Result<KvCache, KvError> {
        for (ty, hd) in [(type_k, layout.head_dim), (type_v, layout.head_dim_v)] {
            if ty == CacheType::Q8_0 && !hd.is_multiple_of(q8_0::QK) {
                return Err(KvError::Q8Width { head_dim: hd });
            }
        }
        let any_swa = layout.window.is_some() && layout.swa_layers.iter().any(|&s| s);
        let mut groups = vec![Cells::new(n_ctx, None)];
        if let (true, Some(w)) = (any_swa, layout.window) {
            groups.push(Cells::new(swa_cells(n_ctx, w), Some(w)));
        }
        let layers = layout
            .swa_layers
            .iter()
            .map(|&swa| {
                let group = usize::from(swa && any_swa);
                let cells = groups[group].size();
                LayerCache {
                    k: Rows::new(type_k, cells, layout.k_width),
                    v: Rows::new(type_v, cells, layout.v_width),
                    k_width: layout.k_width,
                    v_width: layout.v_width,
                    group,
                }
            })
            .collect();
        Ok(KvCache {
            layers,
            groups,
            n_ctx,
            n_past: 0,
            type_k,
            type_v,
            shift_log: Vec::new(),
        })
    }

    /// Positions cached; the next token goes at this position.
    pub fn len(&self) -> usize {
        self.n_past
    }

    pub fn is_empty(&self) -> bool {
        self.n_past == 0
    }

    pub fn n_ctx(&self) -> usize {
        self.n_ctx
    }

    pub fn type_k(&self) -> CacheType {
        self.type_k
    }

    pub fn type_v(&self) -> CacheType {
        self.type_v
    }

    /// Bytes of K and V storage allocated (committed by the OS as cells are first written).
    pub fn bytes(&self) -> usize {
        self.layers.iter().map(|l| l.k.bytes() + l.v.bytes()).sum()
    }

    pub fn layer(&self, il: usize) -> &LayerCache {
        &self.layers[il]
    }

    pub fn layer_mut(&mut self, il: usize) -> &mut LayerCache {
        &mut self.layers[il]
    }

    pub fn n_layer(&self) -> usize {
        self.layers.len()
    }

    /// The cell table of `group` (see [`LayerCache::group`]).
    pub fn cells(&self, group: usize) -> &Cells {
        &self.groups[group]
    }

    pub fn n_groups(&self) -> usize {
        self.groups.len()
    }

    /// Claims cells for the next `n` tokens (positions `len()..len() + n`) in every group and
    /// returns them per group; the caller then writes each layer's rows there.
    pub fn place(&mut self, n: usize) -> Result<Vec<Vec<usize>>, KvError> {
        let pos0 = self.n_past;
        let slots = self
            .groups
            .iter()
            .map(|g| g.find_slot(n))
            .collect::<Result<Vec<_>, _>>()?;
        for (g, s) in self.groups.iter_mut().zip(&slots) {
            g.apply(s, pos0);
        }
        self.n_past += n;
        Ok(slots)
    }

    /// Whether positions `0..n` are all still held where a next token at `n` would look: a
    /// window ring forgets positions older than its size.
    pub fn can_truncate(&self, n: usize) -> bool {
        if n == 0 || n >= self.n_past {
            return true;
        }
        self.groups.iter().all(|g| {
            let need = match g.window {
                // The next token, at n, sees n - window + 1 ..= n - 1.
                Some(w) => (n + 1).saturating_sub(w) as i32,
                None => 0,
            };
            g.pos_min().is_some_and(|m| m <= need)
        })
    }

    /// Forgets positions `n..` and returns the new length: `n`, or 0 (everything forgotten) when
    /// a window ring no longer holds what a token at `n` would attend to (see [`can_truncate`]).
    ///
    /// [`can_truncate`]: KvCache::can_truncate
    pub fn truncate(&mut self, n: usize) -> usize {
        let n = if self.can_truncate(n) { n } else { 0 };
        if n < self.n_past {
            for g in &mut self.groups {
                g.remove(n as i32, i32::MAX);
            }
            self.n_past = n;
        }
        if n == 0 {
            for g in &mut self.groups {
                g.head = 0;
            }
        }
        self.n_past
    }

    /// llama.cpp's context shift: forgets positions `keep..keep + discard` and moves the later
    /// ones down by `discard`. The keys of moved cells still carry their old rotation until the
    /// caller applies [`KvCache::take_shifts`].
    pub fn shift(&mut self, keep: usize, discard: usize) {
        let (k, d, n) = (keep as i32, discard as i32, self.n_past as i32);
        for g in &mut self.groups {
            g.remove(k, k + d);
            g.add(k + d, n, -d);
        }
        self.n_past -= discard;
        self.shift_log.push((keep, discard));
    }

    /// The pending key rotations of `group` as `(cell, delta)`, clearing them.
    pub fn take_shifts(&mut self, group: usize) -> Vec<(usize, i32)> {
        let g = &mut self.groups[group];
        let out = g
            .shift
            .iter()
            .enumerate()
            .filter(|(_, &d)| d != 0)
            .map(|(i, &d)| (i, d))
            .collect();
        g.shift.iter_mut().for_each(|d| *d = 0);
        out
    }

    /// The shifts done since the last call, as `(keep, discard)`.
    pub fn drain_shift_log(&mut self) -> Vec<(usize, usize)> {
        std::mem::take(&mut self.shift_log)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layout(swa: &[bool], window: Option<usize>, width: usize) -> KvLayout {
        KvLayout {
            swa_layers: swa.to_vec(),
            window,
            k_width: width,
            v_width: width,
            head_dim: width,
            head_dim_v: width,
        }
    }

    #[test]
    fn rows_round_trip_per_type() {
        let x: Vec<f32> = (0..32).map(|i| (i as f32 - 15.5) * 0.37).collect();
        for ty in [CacheType::F32, CacheType::F16, CacheType::Q8_0] {
            let mut c = KvCache::new(&layout(&[false], None, 32), 4, ty, ty).expect("cache");
            let cells = c.place(1).expect("slot");
            c.layer_mut(0).write_k(cells[0][0], &x);
            let mut back = vec![0.0; 32];
            c.layer(0).read_k(cells[0][0], &mut back);
            let bound = match ty {
                CacheType::F32 => 0.0,
                CacheType::F16 => 0.004,
                // half a quantization step of amax / 127
                CacheType::Q8_0 => 5.8 / 127.0 * 0.51,
            };
            for (a, b) in x.iter().zip(&back) {
                assert!((a - b).abs() <= bound, "{ty}: {a} vs {b}");
            }
        }
        let e = KvCache::new(
            &layout(&[false], None, 40),
            4,
            CacheType::Q8_0,
            CacheType::F16,
        );
        assert!(matches!(e, Err(KvError::Q8Width { head_dim: 40 })));
    }

    /// Gemma 3 270M's shape at -c 32768: 3 global layers of 32768 cells plus 15 window rings of
    /// 1024 cells (not 18 full layers), and the estimate is what the cache allocates.
    #[test]
    fn window_layers_cost_a_ring_not_the_context() {
        let swa: Vec<bool> = (0..18).map(|il| il % 6 != 5).collect();
        let l = KvLayout {
            swa_layers: swa,
            window: Some(512),
            k_width: 256,
            v_width: 256,
            head_dim: 256,
            head_dim_v: 256,
        };
        let (f16, q8) = (CacheType::F16, CacheType::Q8_0);
        let row = 2 * 256 * 2;
        assert_eq!(
            estimate_bytes(&l, 32768, f16, f16),
            (3 * 32768 + 15 * 1024) * row
        );
        let c = KvCache::new(&l, 32768, f16, q8).expect("cache");
        assert_eq!(c.bytes(), estimate_bytes(&l, 32768, f16, q8));
        assert_eq!(swa_cells(100, 512), 256);
        // a ring never outgrows the (padded) context
        assert_eq!(swa_cells(4096, 4096), 4096);
    }

    #[test]
    fn full_layers_place_by_position_and_truncate() {
        let mut c = KvCache::new(
            &layout(&[false, false], None, 2),
            8,
            CacheType::F32,
            CacheType::F32,
        )
        .expect("cache");
        assert_eq!(c.place(3).expect("slot")[0], vec![0, 1, 2]);
        assert_eq!(c.place(1).expect("slot")[0], vec![3]);
        assert_eq!(c.truncate(2), 2);
        assert_eq!(c.cells(0).positions()[..4], [0, 1, -1, -1]);
        assert_eq!(c.place(2).expect("slot")[0], vec![2, 3]);
        assert_eq!(c.len(), 4);
        assert!(c.place(5).is_err());
    }

    /// Window 4, ring of 256 + ... cells: the ring wraps and overwrites only tokens that no later
    /// query sees, and truncating past what the ring holds forgets everything.
    #[test]
    fn ring_wraps_and_keeps_the_window() {
        let mut c = KvCache::new(
            &layout(&[true, false], Some(4), 2),
            2048,
            CacheType::F32,
            CacheType::F32,
        )
        .expect("cache");
        let ring = c.cells(1).size();
        assert_eq!(ring, 768); // pad(4 + 512, 256)
        for _ in 0..ring + 10 {
            c.place(1).expect("slot");
        }
        let pos = c.cells(1).positions();
        // Token ring + 9 went into cell 9 (wrapped), evicting position 9 and older.
        assert_eq!(pos[9], (ring + 9) as i32);
        assert_eq!(pos[10], 10);
        assert_eq!(c.cells(0).positions()[ring + 9], (ring + 9) as i32);
        let n = c.len();
        assert!(c.can_truncate(n - 100));
        assert_eq!(c.truncate(n - 100), n - 100);
        assert_eq!(c.truncate(5), 0);
        assert!(c.cells(1).positions().iter().all(|&p| p < 0));
    }

    #[test]
    fn shift_moves_positions_and_records_deltas() {
        let mut c = KvCache::new(
            &layout(&[false], None, 2),
            8,
            CacheType::F16,
            CacheType::F16,
        )
        .expect("cache");
        c.place(8).expect("slot");
        c.shift(1, 3);
        assert_eq!(c.len(), 5);
        assert_eq!(c.cells(0).positions(), &[0, -1, -1, -1, 1, 2, 3, 4]);
        assert_eq!(c.take_shifts(0), vec![(4, -3), (5, -3), (6, -3), (7, -3)]);
        assert!(c.take_shifts(0).is_empty());
        // New tokens fill the freed cells from the start.
        assert_eq!(c.place(2).expect("slot")[0], vec![1, 2]);
        assert_eq!(c.drain_shift_log(), vec![(1, 3)]);
    }
}
