// The argmax kernel's workgroup step with subgroups: the largest value first (subgroupMax of an
// order-preserving key, one atomic per subgroup), then the lowest index holding it (subgroupMin,
// one atomic per subgroup). Max and min do not depend on the order they are taken in, so the
// index is the tree's (common/argmax_wg.wgsl): the largest value, the lowest index on ties.

var<workgroup> best_key: atomic<u32>;
var<workgroup> best_idx: atomic<u32>;

// f32 bits mapped to u32 so that unsigned order is float order, -0 taken as +0 (equal values);
// 0 stands for "no value" below every float's key.
fn best_key_of(x: f32, idx: u32) -> u32 {
    if (idx == NONE) {
        return 0u;
    }
    var b = bitcast<u32>(x);
    if (x == 0.0) {
        b = 0u;
    }
    if ((b & 0x80000000u) != 0u) {
        return ~b;
    }
    return b | 0x80000000u;
}

fn reduce_best(lid: u32, best: f32, idx: u32) -> u32 {
    if (lid == 0u) {
        atomicStore(&best_key, 0u);
        atomicStore(&best_idx, NONE);
    }
    workgroupBarrier();
    let key = best_key_of(best, idx);
    let km = subgroupMax(key);
    if (subgroupBroadcastFirst(lid) == lid) {
        atomicMax(&best_key, km);
    }
    workgroupBarrier();
    let top = atomicLoad(&best_key);
    var cand = NONE;
    if (idx != NONE && key == top) {
        cand = idx;
    }
    let im = subgroupMin(cand);
    if (subgroupBroadcastFirst(lid) == lid) {
        atomicMin(&best_idx, im);
    }
    workgroupBarrier();
    return atomicLoad(&best_idx);
}
