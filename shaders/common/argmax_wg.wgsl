// The argmax kernel's workgroup step without subgroups: a tree over the 256 invocations' bests,
// the larger value winning, the lower index on equal values.
var<workgroup> bv: array<f32, 256>;
var<workgroup> bi: array<u32, 256>;

fn reduce_best(lid: u32, best: f32, idx: u32) -> u32 {
    bv[lid] = best;
    bi[lid] = idx;
    workgroupBarrier();
    for (var s = WG / 2u; s > 0u; s = s / 2u) {
        if (lid < s) {
            let ov = bv[lid + s];
            let oi = bi[lid + s];
            if (oi != NONE && (bi[lid] == NONE || ov > bv[lid] || (ov == bv[lid] && oi < bi[lid]))) {
                bv[lid] = ov;
                bi[lid] = oi;
            }
        }
        workgroupBarrier();
    }
    return bi[0];
}
