#version 450
// out[s, t] = sum_{p in rows of s} coef[p] * x[row[p], t], with the (point, neighbour) pairs of
// each splat s listed in CSR form (offsets, row): the gradient of E_splat in the splat means.
// x runs over t (feature), y over s (splat): no atomics, no write races. One pass sums entries
// [p_first, p_first + p_count) of each row and adds to the result after the first pass
// (lavapipe stops a loop after 65,535 iterations; a popular splat can have more entries).
layout(local_size_x = 64) in;
layout(std430, binding = 0) readonly buffer X { float x[]; };            // (N, D)
layout(std430, binding = 1) readonly buffer OFF { uint offsets[]; };     // (S + 1)
layout(std430, binding = 2) readonly buffer ROW { uint row[]; };         // (nnz)
layout(std430, binding = 3) readonly buffer COEF { float coef[]; };      // (nnz)
layout(std430, binding = 4) buffer OUT { float result[]; };              // (S, D)
layout(push_constant) uniform Push { float s_first; float d; float p_first; float p_count; } pc;

void main() {
    uint t = gl_GlobalInvocationID.x, s = gl_GlobalInvocationID.y + uint(pc.s_first);
    uint D = uint(pc.d);
    if (t >= D) return;
    uint begin = offsets[s] + uint(pc.p_first);
    uint end = min(offsets[s + 1], begin + uint(pc.p_count));
    float acc = pc.p_first > 0.0 ? result[s * D + t] : 0.0;
    for (uint p = begin; p < end; ++p) acc += coef[p] * x[row[p] * D + t];
    result[s * D + t] = acc;
}
