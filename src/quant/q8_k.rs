//! Q8_K: the activation format every k-quant weight type is multiplied with. Block of 256 values:
//! an f32 scale, 256 signed bytes and 16 sums of 16 quants each (`bsums`, which let the weight
//! formats with a per-sub-block minimum fold that minimum in without touching the quants again).
//! Layout: ggml-common.h `block_q8_K`. Also holds what every k-quant module shares: `QK_K`, the
//! row length check and ggml's `nearest_int` rounding.
//!
//! This module must not hold SIMD code; the AVX2 twin of `quantize_row` lives in `x86/`.

use std::mem::{align_of, size_of};

use super::{as_blocks, as_blocks_mut, Block, GgmlType, TypeKernels};

/// Elements per super-block of every k-quant format.
pub const QK_K: usize = 256;

/// `block_q8_K`: `d` is an f32 stored little-endian, `bsums` are i16 little-endian.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BlockQ8K {
    pub d: [u8; 4],
    pub qs: [i8; QK_K],
    pub bsums: [[u8; 2]; QK_K / 16],
}

const _: () = assert!(size_of::<BlockQ8K>() == 292 && align_of::<BlockQ8K>() == 1);

impl BlockQ8K {
    pub fn d(&self) -> f32 {
        f32::from_le_bytes(self.d)
    }

    pub fn bsum(&self, j: usize) -> i32 {
        i32::from(i16::from_le_bytes(self.bsums[j]))
    }
}

// SAFETY: repr(C), only byte arrays: alignment 1, no padding, every bit pattern is valid.
unsafe impl Block for BlockQ8K {}

pub const KERNELS: TypeKernels = TypeKernels {
    ty: GgmlType::Q8_K,
    vec_dot_type: GgmlType::Q8_K,
    to_f32: dequantize_row,
    from_f32: quantize_row,
    vec_dot,
};

/// Checks that `bytes` holds exactly the blocks for `n` elements of a k-quant format.
pub(crate) fn check_row(n: usize, bytes: usize, block_bytes: usize, what: &str) {
    assert!(
        n.is_multiple_of(QK_K) && bytes == n / QK_K * block_bytes,
        "{what}: {n} elements need {} bytes, got {bytes}",
        n / QK_K * block_bytes
    );
}

/// ggml's `nearest_int`: round half to even through the 1.5·2^23 trick. Written the same way
/// (rather than `round_ties_even`) so that out-of-range and non-finite inputs give ggml's
/// integers too, which keeps our quantizers byte-identical to ggml's on any input.
#[inline(always)]
pub(crate) fn nearest_int(x: f32) -> i32 {
    let v = x + 12_582_912.0;
    (v.to_bits() & 0x007f_ffff) as i32 - 0x0040_0000
}

/// Dequantizes whole Q8_K blocks (ggml `dequantize_row_q8_K`).
pub fn dequantize_row(bytes: &[u8], y: &mut [f32]) {
    check_row(y.len(), bytes.len(), size_of::<BlockQ8K>(), "Q8_K");
    for (b, y) in as_blocks::<BlockQ8K>(bytes)
        .iter()
        .zip(y.chunks_exact_mut(QK_K))
    {
        let d = b.d();
        for (y, &q) in y.iter_mut().zip(&b.qs) {
            *y = d * f32::from(q);
        }
    }
}

/// Quantizes one block of 256 values (ggml `quantize_row_q8_K_ref`): the value of largest
/// magnitude (the first one, on ties) maps to -127, every value rounds to nearest.
pub fn quantize_block(x: &[f32], b: &mut BlockQ8K) {
    let mut max = 0.0f32;
    let mut amax = 0.0f32;
    for &v in x {
        let av = v.abs();
        if av > amax {
            amax = av;
            max = v;
        }
    }
    if amax == 0.0 {
        // ggml leaves bsums untouched here; zero is their only consistent value.
        *b = BlockQ8K {
            d: [0; 4],
            qs: [0; QK_K],
            bsums: [[0; 2]; QK_K / 16],
        };
        return;
    }
    let iscale = -127.0 / max;
    for (q, &v) in b.qs.iter_mut().zip(x) {
        *q = nearest_int(iscale * v).min(127) as i8;
    }
    for (s, q) in b.bsums.iter_mut().zip(b.qs.chunks_exact(16)) {
        let sum: i32 = q.iter().map(|&v| i32::from(v)).sum();
        *s = (sum as i16).to_le_bytes();
    }
    b.d = (1.0 / iscale).to_le_bytes();
}

/// Quantizes whole blocks of activations into Q8_K (scalar reference).
pub fn quantize_row(x: &[f32], bytes: &mut [u8]) {
    check_row(x.len(), bytes.len(), size_of::<BlockQ8K>(), "Q8_K");
    for (b, x) in as_blocks_mut::<BlockQ8K>(bytes)
        .iter_mut()
        .zip(x.chunks_exact(QK_K))
    {
        quantize_block(x, b);
    }
}

/// Q8_K · Q8_K. ggml has no such kernel; it exists so the type table has a complete row, and is
/// exact integer sums scaled once per block.
pub fn vec_dot(n: usize, w: &[u8], a: &[u8]) -> f32 {
    check_row(n, w.len(), size_of::<BlockQ8K>(), "Q8_K");
    check_row(n, a.len(), size_of::<BlockQ8K>(), "Q8_K");
    let mut sumf = 0.0f32;
    for (x, y) in as_blocks::<BlockQ8K>(w)
        .iter()
        .zip(as_blocks::<BlockQ8K>(a))
    {
        let isum: i32 =
            x.qs.iter()
                .zip(&y.qs)
                .map(|(&p, &q)| i32::from(p) * i32::from(q))
                .sum();
        sumf += x.d() * y.d() * isum as f32;
    }
    sumf
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_int_rounds_half_to_even() {
        assert_eq!(nearest_int(0.5), 0);
        assert_eq!(nearest_int(1.5), 2);
        assert_eq!(nearest_int(-2.5), -2);
        assert_eq!(nearest_int(-2.6), -3);
        assert_eq!(nearest_int(126.49), 126);
    }

    #[test]
    fn largest_magnitude_maps_to_127_and_bsums_add_up() {
        let x: Vec<f32> = (0..QK_K).map(|i| (i as f32 - 100.0) * 0.25).collect();
        let mut bytes = vec![0u8; 292];
        quantize_row(&x, &mut bytes);
        let b = as_blocks::<BlockQ8K>(&bytes)[0];
        // max |x| is x[255] = 38.75 > 0, so iscale < 0 and it maps to -127.
        assert_eq!(b.qs[255], -127);
        for j in 0..16 {
            let s: i32 = b.qs[16 * j..16 * j + 16]
                .iter()
                .map(|&q| i32::from(q))
                .sum();
            assert_eq!(b.bsum(j), s);
        }
        let mut y = vec![0.0; QK_K];
        dequantize_row(&bytes, &mut y);
        for (a, b) in x.iter().zip(&y) {
            assert!((a - b).abs() <= 38.75 / 127.0 * 0.5 + 1e-5);
        }
    }

    #[test]
    fn q8k_dot_equals_dot_of_dequantized_rows() {
        let x: Vec<f32> = (0..2 * QK_K)
            .map(|i| (i as f32 * 0.7).sin() * 4.0)
            .collect();
        let y: Vec<f32> = (0..2 * QK_K)
            .map(|i| (i as f32 * 0.3).cos() - 0.25)
            .collect();
        let (mut qx, mut qy) = (vec![0u8; 2 * 292], vec![0u8; 2 * 292]);
        quantize_row(&x, &mut qx);
        quantize_row(&y, &mut qy);
        let (mut dx, mut dy) = (vec![0.0; 2 * QK_K], vec![0.0; 2 * QK_K]);
        dequantize_row(&qx, &mut dx);
        dequantize_row(&qy, &mut dy);
        let exact: f64 = dx
            .iter()
            .zip(&dy)
            .map(|(&a, &b)| f64::from(a) * f64::from(b))
            .sum();
        let got = f64::from(vec_dot(2 * QK_K, &qx, &qy));
        assert!(
            (got - exact).abs() <= 1e-5 * exact.abs(),
            "{got} vs {exact}"
        );
    }

    #[test]
    fn zero_block_is_all_zero() {
        let mut bytes = vec![0xAAu8; 292];
        quantize_row(&[0.0; QK_K], &mut bytes);
        assert!(bytes.iter().all(|&b| b == 0));
    }
}
