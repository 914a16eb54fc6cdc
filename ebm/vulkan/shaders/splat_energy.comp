#version 450
// E_splat(z) = -tau log sum_j alpha_j exp(kappa_j (mu_j . z - 1) / tau) over each point's k
// neighbours, with its softmax weights w and cosines; splat_grad.comp then forms the gradient.
// One workgroup per point: z is staged once in shared memory, invocation j takes neighbours
// j and j + 64 (D loop iterations each, under llvmpipe's 65,535 per invocation), and the
// log-sum-exp, shifted by its maximum for stability, is reduced in shared memory.
layout(local_size_x = 64) in;
layout(std430, binding = 0) readonly buffer Z { float z[]; };            // (N, D)
layout(std430, binding = 1) readonly buffer MU { float mu[]; };          // (K, D)
layout(std430, binding = 2) readonly buffer LA { float log_alpha[]; };   // (K)
layout(std430, binding = 3) readonly buffer KA { float kappa[]; };       // (K)
layout(std430, binding = 4) readonly buffer IDX { uint idx[]; };         // (N, k)
layout(std430, binding = 5) writeonly buffer E { float energy[]; };      // (>= offset + N)
layout(std430, binding = 6) writeonly buffer W { float weight[]; };      // (N, k)
layout(std430, binding = 7) writeonly buffer C { float cosine[]; };      // (N, k)
layout(push_constant) uniform Push { float k; float d; float tau; float offset; float first; } pc;
const uint MAX_K = 65;  // knn_k <= 64, plus the context term's flat splat (ebm.attractors)
const uint MAX_D = 4096;  // 16 KiB, the least shared memory Vulkan guarantees
shared float zs[MAX_D];
shared float logk[MAX_K];
shared float shift, total;

void main() {
    uint i = gl_WorkGroupID.x + uint(pc.first), lane = gl_LocalInvocationID.x;
    uint K = uint(pc.k), D = uint(pc.d);
    for (uint t = lane; t < D; t += 64) zs[t] = z[i * D + t];
    barrier();
    for (uint j = lane; j < K; j += 64) {
        uint s = idx[i * K + j];
        float dot = 0.0;
        for (uint t = 0; t < D; ++t) dot += zs[t] * mu[s * D + t];
        cosine[i * K + j] = dot;
        logk[j] = log_alpha[s] + kappa[s] * (dot - 1.0) / pc.tau;
    }
    barrier();
    if (lane == 0) {  // k <= 65 terms: a serial pass is cheaper than a tree of barriers
        float m = -3.0e38;
        for (uint j = 0; j < K; ++j) m = max(m, logk[j]);
        float sum = 0.0;
        for (uint j = 0; j < K; ++j) sum += exp(logk[j] - m);
        shift = m; total = sum;
        energy[uint(pc.offset) + i] = -pc.tau * (m + log(sum));
    }
    barrier();
    for (uint j = lane; j < K; j += 64) weight[i * K + j] = exp(logk[j] - shift) / total;
}
