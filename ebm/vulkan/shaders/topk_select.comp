#version 450
// The k best scores of each query among splats [first, first + count), merged into the top-k
// already held in the output when first > 0; sorted best first, ties keep the lower id.
// The host calls it in ranges of at most 60,000 splats (lavapipe's loop limit is 65,535).
layout(local_size_x = 64) in;
layout(std430, binding = 0) readonly buffer SC { float scores[]; };      // (N, S)
layout(std430, binding = 1) buffer I { uint best_id[]; };                // (N, k)
layout(std430, binding = 2) buffer V { float best_val[]; };              // (N, k)
layout(push_constant) uniform Push { float n; float s_count; float k; float first; float count; } pc;
const uint MAX_K = 64;

void main() {
    uint i = gl_GlobalInvocationID.x;
    uint N = uint(pc.n), S = uint(pc.s_count), K = uint(pc.k), first = uint(pc.first);
    if (i >= N) return;
    float val[MAX_K];
    uint ids[MAX_K];
    for (uint j = 0; j < K; ++j) {
        val[j] = first > 0u ? best_val[i * K + j] : -3.0e38;
        ids[j] = first > 0u ? best_id[i * K + j] : 0u;
    }
    uint last = first + uint(pc.count);
    for (uint s = first; s < last; ++s) {
        float dot = scores[i * S + s];
        if (dot > val[K - 1]) {  // insert, keeping val sorted in descending order
            val[K - 1] = dot; ids[K - 1] = s;
            for (uint j = K - 1; j > 0; --j) {
                if (val[j] <= val[j - 1]) break;
                float tv = val[j]; val[j] = val[j - 1]; val[j - 1] = tv;
                uint ti = ids[j]; ids[j] = ids[j - 1]; ids[j - 1] = ti;
            }
        }
    }
    for (uint j = 0; j < K; ++j) { best_id[i * K + j] = ids[j]; best_val[i * K + j] = val[j]; }
}
