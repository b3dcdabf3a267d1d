// common/reduce.wgsl where the adapter has subgroups (naga takes subgroup functions without an
// `enable`, once the device has the feature; nor `subgroupElect`: the first active lane is the
// one whose index `subgroupBroadcastFirst` returns): the maximum through subgroupMax and one
// atomic per subgroup instead of a six-step tree (a maximum does not depend on the order it is
// taken in, so the result is the tree's; +0 and -0, equal as values, may come back either way,
// as from the tree). The sum keeps the tree: its order is part of the result. Call from uniform
// control flow only: they hold barriers. The result is returned to every invocation.

const WG: u32 = 64u;
var<workgroup> red: array<f32, 64>;
var<workgroup> red_max: atomic<u32>;

fn wg_sum(lid: u32, v: f32) -> f32 {
    red[lid] = v;
    workgroupBarrier();
    for (var s = WG / 2u; s > 0u; s = s / 2u) {
        if (lid < s) {
            red[lid] = red[lid] + red[lid + s];
        }
        workgroupBarrier();
    }
    let r = red[0];
    workgroupBarrier();
    return r;
}

// f32 bits mapped to u32 so that unsigned order is float order (NaN aside).
fn ord_key(x: f32) -> u32 {
    let b = bitcast<u32>(x);
    if ((b & 0x80000000u) != 0u) {
        return ~b;
    }
    return b | 0x80000000u;
}

fn ord_value(k: u32) -> f32 {
    if ((k & 0x80000000u) != 0u) {
        return bitcast<f32>(k & 0x7fffffffu);
    }
    return bitcast<f32>(~k);
}

fn wg_max(lid: u32, v: f32) -> f32 {
    if (lid == 0u) {
        atomicStore(&red_max, 0u);
    }
    workgroupBarrier();
    let m = subgroupMax(v);
    if (subgroupBroadcastFirst(lid) == lid) {
        atomicMax(&red_max, ord_key(m));
    }
    workgroupBarrier();
    let r = ord_value(atomicLoad(&red_max));
    workgroupBarrier();
    return r;
}
