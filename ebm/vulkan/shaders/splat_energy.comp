#version 450
// E_splat(z) = -tau log sum_j alpha_j exp(kappa_j (mu_j . z - 1) / tau) over each point's k
// neighbours, with its softmax weights w and cosines; splat_grad.comp then forms the gradient.
// One invocation per point (k * D loop iterations: llvmpipe allows 65,535 per invocation);
// log-sum-exp is shifted by the maximum for stability.
layout(local_size_x = 64) in;
layout(std430, binding = 0) readonly buffer Z { float z[]; };            // (N, D)
layout(std430, binding = 1) readonly buffer MU { float mu[]; };          // (K, D)
layout(std430, binding = 2) readonly buffer LA { float log_alpha[]; };   // (K)
layout(std430, binding = 3) readonly buffer KA { float kappa[]; };       // (K)
layout(std430, binding = 4) readonly buffer IDX { uint idx[]; };         // (N, k)
layout(std430, binding = 5) writeonly buffer E { float energy[]; };      // (>= offset + N)
layout(std430, binding = 6) writeonly buffer W { float weight[]; };      // (N, k)
layout(std430, binding = 7) writeonly buffer C { float cosine[]; };      // (N, k)
layout(push_constant) uniform Push { float n; float k; float d; float tau; float offset; } pc;
const uint MAX_K = 65;  // knn_k <= 64, plus the context term's flat splat (ebm.attractors)

void main() {
    uint i = gl_GlobalInvocationID.x;
    uint N = uint(pc.n), K = uint(pc.k), D = uint(pc.d);
    if (i >= N) return;
    float logk[MAX_K];
    float m = -3.0e38;
    for (uint j = 0; j < K; ++j) {
        uint s = idx[i * K + j];
        float dot = 0.0;
        for (uint t = 0; t < D; ++t) dot += z[i * D + t] * mu[s * D + t];
        cosine[i * K + j] = dot;
        logk[j] = log_alpha[s] + kappa[s] * (dot - 1.0) / pc.tau;
        m = max(m, logk[j]);
    }
    float total = 0.0;
    for (uint j = 0; j < K; ++j) { logk[j] = exp(logk[j] - m); total += logk[j]; }
    energy[uint(pc.offset) + i] = -pc.tau * (m + log(total));
    for (uint j = 0; j < K; ++j) weight[i * K + j] = logk[j] / total;
}
