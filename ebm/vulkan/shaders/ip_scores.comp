#version 450
// scores[i, s] = q_i . mu_s for every query and splat: x runs over splats, y over queries.
// (A separate pass from the selection: lavapipe stops any one loop after 65,535 iterations,
// so no invocation may walk all splats times all dimensions.)
layout(local_size_x = 64) in;
layout(std430, binding = 0) readonly buffer Q { float q[]; };            // (N, D)
layout(std430, binding = 1) readonly buffer MU { float mu[]; };          // (S, D)
layout(std430, binding = 2) writeonly buffer SC { float scores[]; };     // (N, S)
layout(push_constant) uniform Push { float s_count; float d; } pc;

void main() {
    uint s = gl_GlobalInvocationID.x, i = gl_GlobalInvocationID.y;
    uint S = uint(pc.s_count), D = uint(pc.d);
    if (s >= S) return;
    float dot = 0.0;
    for (uint t = 0; t < D; ++t) dot += q[i * D + t] * mu[s * D + t];
    scores[i * S + s] = dot;
}
