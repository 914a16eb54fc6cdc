#version 450
// Exact top-k by inner product of each query against all splat means (brute force), sorted
// best first; ties keep the lower id. One invocation per query.
layout(local_size_x = 64) in;
layout(std430, binding = 0) readonly buffer Q { float q[]; };            // (N, D)
layout(std430, binding = 1) readonly buffer MU { float mu[]; };          // (K, D)
layout(std430, binding = 2) writeonly buffer I { uint best_id[]; };      // (N, k)
layout(std430, binding = 3) writeonly buffer V { float best_val[]; };    // (N, k)
layout(push_constant) uniform Push { float n; float k_splats; float d; float k; } pc;
const uint MAX_K = 64;

void main() {
    uint i = gl_GlobalInvocationID.x;
    uint N = uint(pc.n), S = uint(pc.k_splats), D = uint(pc.d), K = uint(pc.k);
    if (i >= N) return;
    float val[MAX_K];
    uint ids[MAX_K];
    for (uint j = 0; j < K; ++j) { val[j] = -3.0e38; ids[j] = 0u; }
    for (uint s = 0; s < S; ++s) {
        float dot = 0.0;
        for (uint t = 0; t < D; ++t) dot += q[i * D + t] * mu[s * D + t];
        if (dot <= val[K - 1]) continue;
        uint j = K - 1;
        while (j > 0 && val[j - 1] < dot) { val[j] = val[j - 1]; ids[j] = ids[j - 1]; --j; }
        val[j] = dot; ids[j] = s;
    }
    for (uint j = 0; j < K; ++j) { best_id[i * K + j] = ids[j]; best_val[i * K + j] = val[j]; }
}
