#version 450
// out[s, t] = sum_{p in rows of s} coef[p] * x[row[p], t], with the (point, neighbour) pairs of
// each splat s listed in CSR form (offsets, row): the gradient of E_splat in the splat means.
// x runs over t (feature), y over s (splat): no atomics, no write races.
layout(local_size_x = 64) in;
layout(std430, binding = 0) readonly buffer X { float x[]; };            // (N, D)
layout(std430, binding = 1) readonly buffer OFF { uint offsets[]; };     // (S + 1)
layout(std430, binding = 2) readonly buffer ROW { uint row[]; };         // (nnz)
layout(std430, binding = 3) readonly buffer COEF { float coef[]; };      // (nnz)
layout(std430, binding = 4) writeonly buffer OUT { float result[]; };    // (S, D)
layout(push_constant) uniform Push { float s_first; float d; } pc;

void main() {
    uint t = gl_GlobalInvocationID.x, s = gl_GlobalInvocationID.y + uint(pc.s_first);
    uint D = uint(pc.d);
    if (t >= D) return;
    float acc = 0.0;
    for (uint p = offsets[s]; p < offsets[s + 1]; ++p) acc += coef[p] * x[row[p] * D + t];
    result[s * D + t] = acc;
}
