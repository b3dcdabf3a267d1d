//! The tiled form for the query heads that share a kv head, with AVX-512. The heads of one token
//! that read one kv head see the same cells under the same mask, so each key and value vector
//! loaded serves up to `HEADS` of them, where [`Row::tiled_avx2`] reads the keys and values once
//! per head (from L2 for a long prompt: that read, not the arithmetic, set its pace). Every head
//! keeps its own chains in their order, so the bits are `tiled_avx2`'s.

use std::arch::x86_64::*;

use half::f16;

use super::{rescale, KeysT, Row, TILE_KV};
use crate::model::kv_cache::RowsRef;

/// Heads per pass: four of them times a tile's four 16-cell vectors are 16 accumulators.
pub(super) const HEADS: usize = 4;
/// Value dimensions per pass of [`add_values`] (four 16-lane vectors per head).
const DIMS: usize = 64;

/// Whether this CPU and this value width take the form.
pub(super) fn available(head_dim_v: usize) -> bool {
    head_dim_v.is_multiple_of(DIMS) && crate::quant::x86::avx512::available()
}

/// The rows (at most [`HEADS`] query heads of one token, one kv head: same position, same
/// cells) into `out`, one row of `head_dim_v` after another, as `tiled_avx2` computes each.
pub(super) fn tiled_heads(rows: &[Row<'_>], kt: &KeysT, out: &mut [f32]) {
    let hdv = rows[0].p.head_dim_v;
    assert!(
        available(hdv) && out.len() == rows.len() * hdv,
        "a group of heads' outputs"
    );
    assert!(
        rows.iter()
            .all(|r| r.kvh == rows[0].kvh && r.pos == rows[0].pos && r.n_kv == rows[0].n_kv),
        "one token's heads of one kv head"
    );
    // SAFETY (all arms): `available` checked avx512f (with avx2, fma and f16c) and the width.
    unsafe {
        match rows {
            [a, b, c, d] => tiled::<4>([a, b, c, d], kt, out),
            [a, b, c] => tiled::<3>([a, b, c], kt, out),
            [a, b] => tiled::<2>([a, b], kt, out),
            [a] => tiled::<1>([a], kt, out),
            _ => unreachable!("1 to {HEADS} heads per pass, not {}", rows.len()),
        }
    }
}

/// # Safety
/// avx512f, avx2, fma and f16c available; `head_dim_v` a multiple of [`DIMS`].
#[target_feature(enable = "avx2,fma,f16c,avx512f")]
unsafe fn tiled<const R: usize>(rows: [&Row<'_>; R], kt: &KeysT, out: &mut [f32]) {
    let r0 = rows[0];
    let (hd, hdv) = (r0.p.head_dim, r0.p.head_dim_v);
    let RowsRef::F16(values) = r0.kv.values else {
        unreachable!("f16 values (checked by `supports`)")
    };
    let kt_h = &kt.data[r0.kvh * hd * kt.ld..(r0.kvh + 1) * hd * kt.ld];
    let qs = rows.map(|r| r.q);
    // `out` holds the running value sums: zero, as `tiled_avx2`'s accumulators start.
    out.fill(0.0);
    let mut kq = [[0.0f32; TILE_KV]; R];
    let (mut m, mut s) = ([f32::NEG_INFINITY; R], [0.0f32; R]);
    let mut dots = [[0.0f32; TILE_KV]; R];
    for ic in (0..r0.n_kv).step_by(TILE_KV) {
        let n = TILE_KV.min(r0.n_kv - ic);
        let seen: [bool; TILE_KV] = std::array::from_fn(|tk| tk < n && r0.visible(ic + tk));
        if !seen.contains(&true) {
            continue;
        }
        // SAFETY: the features are this function's; `ld` covers whole tiles, so the tile's
        // cells are inside every dimension row of `kt_h`.
        unsafe { scores::<R>(qs, kt_h, kt.ld, ic, &mut dots) };
        let mut active = [false; R];
        for r in 0..R {
            for ((e, &dot), &seen) in kq[r].iter_mut().zip(&dots[r]).zip(&seen) {
                *e = if seen {
                    dot * r0.p.scale + 0.0
                } else {
                    f32::NEG_INFINITY
                };
            }
            let acc = &mut out[r * hdv..(r + 1) * hdv];
            // SAFETY: the features are this function's.
            active[r] = unsafe { tile_softmax(&mut kq[r], &mut m[r], &mut s[r], acc) };
        }
        let cells = Cells {
            values,
            stride: r0.p.n_head_kv * hdv,
            offset: r0.kvh * hdv,
            ic,
            n,
        };
        // SAFETY: as above; `out` holds R rows of hdv (asserted by `tiled_heads`).
        unsafe { add_values::<R>(&cells, &kq, active, hdv, out) };
    }
    for (r, o) in out.chunks_exact_mut(hdv).enumerate() {
        let inv = if s[r] == 0.0 { 0.0 } else { 1.0 / s[r] };
        for o in o.iter_mut() {
            *o *= inv;
        }
    }
}

/// `scores_avx512` for `R` query rows and one tile: each key vector loaded once for all rows,
/// each (row, cell) one FMA chain over the dimensions in order.
#[target_feature(enable = "avx2,fma,f16c,avx512f")]
unsafe fn scores<const R: usize>(
    qs: [&[f32]; R],
    kt_h: &[f32],
    ld: usize,
    ic: usize,
    dots: &mut [[f32; TILE_KV]; R],
) {
    const G: usize = TILE_KV / 16;
    let mut a = [[_mm512_setzero_ps(); G]; R];
    let hd = qs[0].len();
    for d in 0..hd {
        let kd = &kt_h[d * ld + ic..d * ld + ic + TILE_KV];
        // SAFETY: `kd` holds a whole tile of f32.
        let k: [__m512; G] =
            std::array::from_fn(|g| unsafe { _mm512_loadu_ps(kd.as_ptr().add(16 * g)) });
        for (a, q) in a.iter_mut().zip(&qs) {
            let qv = _mm512_set1_ps(q[d]);
            for (a, &k) in a.iter_mut().zip(&k) {
                *a = _mm512_fmadd_ps(k, qv, *a);
            }
        }
    }
    for (d, a) in dots.iter_mut().zip(&a) {
        for (g, a) in a.iter().enumerate() {
            // SAFETY: each group is sixteen f32 of the row's dots.
            unsafe { _mm512_storeu_ps(d.as_mut_ptr().add(16 * g), *a) };
        }
    }
}

/// One tile's cells of the kv head: `n` cells from `ic`, each `stride` f16 apart in `values`
/// from `offset`.
struct Cells<'a> {
    values: &'a [f16],
    stride: usize,
    offset: usize,
    ic: usize,
    n: usize,
}

/// `Row::add_values_avx512` for `R` rows (the `active` ones: the rest skip the tile, as they do
/// there): each value vector converted once for all rows; a cell whose weight is zero for a row
/// adds `w * 0` to that row, as in the one-row forms.
#[target_feature(enable = "avx2,fma,f16c,avx512f")]
unsafe fn add_values<const R: usize>(
    cells: &Cells<'_>,
    kq: &[[f32; TILE_KV]; R],
    active: [bool; R],
    hdv: usize,
    acc: &mut [f32],
) {
    const G: usize = DIMS / 16;
    let zero = _mm512_setzero_ps();
    let weights: [[f32; R]; TILE_KV] = std::array::from_fn(|tk| std::array::from_fn(|r| kq[r][tk]));
    for d0 in (0..hdv).step_by(DIMS) {
        let mut a = [[zero; G]; R];
        for (r, a) in a.iter_mut().enumerate() {
            for (j, a) in a.iter_mut().enumerate() {
                // SAFETY: row r's group j is sixteen f32 of `acc` (R rows of hdv).
                *a = unsafe { _mm512_loadu_ps(acc.as_ptr().add(r * hdv + d0 + 16 * j)) };
            }
        }
        for (tk, w) in weights.iter().enumerate() {
            let nz: [bool; R] = std::array::from_fn(|r| active[r] && tk < cells.n && w[r] != 0.0);
            let v = if nz.contains(&true) {
                let vo = (cells.ic + tk) * cells.stride + cells.offset + d0;
                let v16 = &cells.values[vo..vo + DIMS];
                // SAFETY: `v16` holds sixteen f16 (32 bytes) at 16 * j.
                std::array::from_fn(|j| unsafe {
                    _mm512_cvtph_ps(_mm256_loadu_si256(v16.as_ptr().add(16 * j).cast()))
                })
            } else {
                [zero; G]
            };
            for r in 0..R {
                if !active[r] {
                    continue;
                }
                let wv = _mm512_set1_ps(w[r]);
                for (a, &v) in a[r].iter_mut().zip(&v) {
                    *a = _mm512_fmadd_ps(wv, if nz[r] { v } else { zero }, *a);
                }
            }
        }
        for (r, a) in a.iter().enumerate() {
            for (j, a) in a.iter().enumerate() {
                // SAFETY: as above.
                unsafe { _mm512_storeu_ps(acc.as_mut_ptr().add(r * hdv + d0 + 16 * j), *a) };
            }
        }
    }
}

/// `super::tile_softmax` sixteen cells per vector: the tile's max (exact in any order), the
/// rescale, `ggml_expf` of each cell by [`expf16`] (the scalar's steps per lane) and the f64 sum
/// of the eight-lane `hsum8`s in cell order, so the same weights and sums to the bit.
#[target_feature(enable = "avx2,fma,f16c,avx512f")]
unsafe fn tile_softmax(kq: &mut [f32; TILE_KV], m: &mut f32, s: &mut f32, acc: &mut [f32]) -> bool {
    const G: usize = TILE_KV / 16;
    // SAFETY: group g is sixteen f32 of the tile.
    let v: [__m512; G] =
        std::array::from_fn(|g| unsafe { _mm512_loadu_ps(kq.as_ptr().add(16 * g)) });
    let tile_max =
        _mm512_reduce_max_ps(v.iter().fold(_mm512_set1_ps(f32::NEG_INFINITY), |a, &v| {
            _mm512_max_ps(a, v)
        }));
    if tile_max == f32::NEG_INFINITY {
        return false;
    }
    rescale(tile_max, m, s, acc);
    let mv = _mm512_set1_ps(*m);
    let mut sum = 0.0f64;
    for (g, &v) in v.iter().enumerate() {
        let e = expf16(_mm512_sub_ps(v, mv));
        // SAFETY: as above.
        unsafe { _mm512_storeu_ps(kq.as_mut_ptr().add(16 * g), e) };
        let h = crate::quant::x86::avx512::hsum8_halves(e);
        sum += f64::from(_mm512_cvtss_f32(h));
        sum += f64::from(_mm_cvtss_f32(_mm512_extractf32x4_ps::<2>(h)));
    }
    *s = (f64::from(*s) + sum) as f32;
    true
}

/// `ops::ggml_expf` of sixteen lanes, each lane the scalar's operations in its order (the
/// negated products as `fnmadd`, which rounds `-(a·b) + c` exactly as `fma(-a, b, c)`), the
/// out-of-range cases blended in where the scalar branches to them.
#[target_feature(enable = "avx2,fma,f16c,avx512f")]
pub(super) fn expf16(x: __m512) -> __m512 {
    let c = |bits: u32| _mm512_set1_ps(f32::from_bits(bits));
    let ci = |bits: u32| _mm512_set1_epi32(bits as i32);
    let r = _mm512_set1_ps(12_582_912.0);
    let z = _mm512_fmadd_ps(x, c(0x3FB8_AA3B), r);
    let n = _mm512_sub_ps(z, r);
    let b = _mm512_fnmadd_ps(n, c(0x35BF_BE8E), _mm512_fnmadd_ps(n, c(0x3F31_7200), x));
    let e = _mm512_slli_epi32::<23>(_mm512_castps_si512(z));
    let k = _mm512_castsi512_ps(_mm512_add_epi32(e, ci(1.0f32.to_bits())));
    let u = _mm512_mul_ps(b, b);
    let j = _mm512_fmadd_ps(
        _mm512_fmadd_ps(
            _mm512_fmadd_ps(c(0x3C07_2010), b, c(0x3D2B_9F17)),
            u,
            _mm512_fmadd_ps(c(0x3E2A_AF33), b, c(0x3EFF_FEDB)),
        ),
        u,
        _mm512_mul_ps(c(0x3F7F_FFF6), b),
    );
    let fast = _mm512_fmadd_ps(j, k, k);
    let abs_n = _mm512_castsi512_ps(_mm512_and_si512(_mm512_castps_si512(n), ci(0x7FFF_FFFF)));
    let in_range = _mm512_cmp_ps_mask::<_CMP_LE_OQ>(abs_n, _mm512_set1_ps(126.0));
    if in_range == 0xFFFF {
        return fast;
    }
    let g = _mm512_maskz_mov_epi32(
        _mm512_cmp_ps_mask::<_CMP_LE_OQ>(n, _mm512_setzero_ps()),
        ci(0x8200_0000),
    );
    let s1 = _mm512_castsi512_ps(_mm512_add_epi32(g, ci(0x7F00_0000)));
    let s2 = _mm512_castsi512_ps(_mm512_sub_epi32(e, g));
    let huge = _mm512_cmp_ps_mask::<_CMP_GT_OQ>(abs_n, _mm512_set1_ps(192.0));
    let slow = _mm512_mask_blend_ps(
        huge,
        _mm512_mul_ps(_mm512_fmadd_ps(s2, j, s2), s1),
        _mm512_mul_ps(s1, s1),
    );
    _mm512_mask_blend_ps(in_range, slow, fast)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cpu::ops::ggml_expf;

    /// The sixteen-lane `expf` gives the scalar's bits on a sweep through its range, across both
    /// cut-offs (|n| of 126 and 192) and at the edges (infinities, NaN, zeros).
    #[test]
    fn vector_expf_matches_the_scalar_bits() {
        if !crate::quant::x86::avx512::available() {
            eprintln!("skipped: no AVX-512 here");
            return;
        }
        let mut xs: Vec<f32> = (0..400_000).map(|i| -150.0 + i as f32 * 0.000_63).collect();
        xs.extend((0..4_000).map(|i| -200.0 + i as f32 * 0.1));
        xs.extend([
            f32::NEG_INFINITY,
            f32::INFINITY,
            f32::NAN,
            0.0,
            -0.0,
            -87.3,
            88.7,
            1e-30,
        ]);
        for chunk in xs.chunks(16) {
            let mut lanes = [0.0f32; 16];
            lanes[..chunk.len()].copy_from_slice(chunk);
            let mut got = [0.0f32; 16];
            // SAFETY: checked above; `lanes` and `got` hold sixteen f32.
            unsafe { _mm512_storeu_ps(got.as_mut_ptr(), expf16(_mm512_loadu_ps(lanes.as_ptr()))) };
            for (&x, &g) in lanes.iter().zip(&got) {
                let want = ggml_expf(x);
                assert!(
                    g.to_bits() == want.to_bits() || (g.is_nan() && want.is_nan()),
                    "expf({x}): {g} vs {want}"
                );
            }
        }
    }
}
