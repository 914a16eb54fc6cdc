#version 450
// Euclidean gradient of E_splat: grad[i, t] = -sum_j w_ij kappa_s mu_s[t], s = idx[i, j], from the
// weights of splat_energy.comp. x runs over t (feature), y over points; a workgroup shares one
// point, whose k splat ids and coefficients w kappa are staged once in shared memory.
layout(local_size_x = 64) in;
layout(std430, binding = 0) readonly buffer MU { float mu[]; };          // (K, D)
layout(std430, binding = 1) readonly buffer KA { float kappa[]; };       // (K)
layout(std430, binding = 2) readonly buffer IDX { uint idx[]; };         // (N, k)
layout(std430, binding = 3) readonly buffer W { float weight[]; };       // (N, k)
layout(std430, binding = 4) writeonly buffer G { float grad[]; };        // (N, D)
layout(push_constant) uniform Push { float k; float d; float first; } pc;
const uint MAX_K = 65;
shared uint ids[MAX_K];
shared float coef[MAX_K];

void main() {
    uint t = gl_GlobalInvocationID.x, i = gl_GlobalInvocationID.y + uint(pc.first), lane = gl_LocalInvocationID.x;
    uint K = uint(pc.k), D = uint(pc.d);
    for (uint j = lane; j < K; j += 64) { uint s = idx[i * K + j]; ids[j] = s; coef[j] = weight[i * K + j] * kappa[s]; }
    barrier();  // before any early return: every invocation of the workgroup must meet it
    if (t >= D) return;
    float acc = 0.0;
    for (uint j = 0; j < K; ++j) acc += coef[j] * mu[ids[j] * D + t];
    grad[i * D + t] = -acc;
}
