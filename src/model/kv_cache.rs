//! The key/value cache: per layer, a buffer for `n_ctx` positions allocated once, filled in order.
//! Keys and values are laid out `[position][kv_head][dim]` and rounded to f16 precision on the way
//! in, which is what llama.cpp's default f16 cache stores; they are kept as f32 so that attention
//! reads them without conversion. Sliding-window layers keep every position too (the window is
//! applied when attending), so `truncate` can roll any layer back.

use half::f16;

/// Keys and values of one layer.
pub struct LayerCache {
    k: Vec<f32>,
    v: Vec<f32>,
    k_width: usize,
    v_width: usize,
    len: usize,
}

impl LayerCache {
    /// Append `n` positions: `k` is `n * k_width`, `v` is `n * v_width`. The caller checked room.
    pub fn append(&mut self, k: &[f32], v: &[f32]) {
        let n = k.len() / self.k_width;
        assert!(
            k.len() == n * self.k_width && v.len() == n * self.v_width,
            "kv row widths"
        );
        let (k0, v0) = (self.len * self.k_width, self.len * self.v_width);
        for (d, &s) in self.k[k0..k0 + k.len()].iter_mut().zip(k) {
            *d = f16::from_f32(s).to_f32();
        }
        for (d, &s) in self.v[v0..v0 + v.len()].iter_mut().zip(v) {
            *d = f16::from_f32(s).to_f32();
        }
        self.len += n;
    }

    /// Keys of positions `0..len`.
    pub fn keys(&self) -> &[f32] {
        &self.k[..self.len * self.k_width]
    }

    /// Values of positions `0..len`.
    pub fn values(&self) -> &[f32] {
        &self.v[..self.len * self.v_width]
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

/// The caches of all layers, which always hold the same number of positions between forwards.
pub struct KvCache {
    layers: Vec<LayerCache>,
    n_ctx: usize,
}

impl KvCache {
    /// Zeroed buffers for `n_ctx` positions; the OS commits pages only as they are written.
    pub fn new(n_layer: usize, n_ctx: usize, k_width: usize, v_width: usize) -> KvCache {
        let layers = (0..n_layer)
            .map(|_| LayerCache {
                k: vec![0.0; n_ctx * k_width],
                v: vec![0.0; n_ctx * v_width],
                k_width,
                v_width,
                len: 0,
            })
            .collect();
        KvCache { layers, n_ctx }
    }

    /// Positions cached (those of layer 0; all layers agree outside a forward pass).
    pub fn len(&self) -> usize {
        self.layers.first().map_or(0, |l| l.len)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn n_ctx(&self) -> usize {
        self.n_ctx
    }

    pub fn layer(&self, il: usize) -> &LayerCache {
        &self.layers[il]
    }

    pub fn layer_mut(&mut self, il: usize) -> &mut LayerCache {
        &mut self.layers[il]
    }

    /// Forget positions `n..`; a no-op when `n >= len`.
    pub fn truncate(&mut self, n: usize) {
        for l in &mut self.layers {
            l.len = l.len.min(n);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn append_truncate_and_views() {
        let mut c = KvCache::new(2, 4, 2, 1);
        for il in 0..2 {
            c.layer_mut(il).append(&[1.0, 2.0, 3.0, 4.0], &[5.0, 6.0]);
        }
        assert_eq!(c.len(), 2);
        assert_eq!(c.layer(1).keys(), &[1.0, 2.0, 3.0, 4.0]);
        c.truncate(1);
        assert_eq!(c.len(), 1);
        c.layer_mut(0).append(&[9.0, 9.0], &[8.0]);
        assert_eq!(c.layer(0).keys(), &[1.0, 2.0, 9.0, 9.0]);
        assert_eq!(c.layer(0).values(), &[5.0, 8.0]);
        c.truncate(10);
        assert_eq!(c.layer(0).len(), 2);
    }
}
