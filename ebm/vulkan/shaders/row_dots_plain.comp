#version 450
// row_dots.comp without shared memory: one invocation per output, out[b, w] = bias[w] +
// sign * x_b . y_w. On CPU drivers (llvmpipe) every barrier of the tiled kernel is a switch
// between the workgroup's SIMD threads, and a 16 x 16 tile wastes 15/16 of its work when a
// single context is scored, so this is the faster kernel there (docs/benchmarks.md).
layout(local_size_x = 64) in;
layout(std430, binding = 0) readonly buffer X { float x[]; };            // (B, D)
layout(std430, binding = 1) readonly buffer Y { float y[]; };            // (W, D)
layout(std430, binding = 2) readonly buffer BIAS { float bias[]; };      // (W), or unread
layout(std430, binding = 3) writeonly buffer OUT { float result[]; };    // (B, W)
layout(push_constant) uniform Push { float b; float w; float d; float sign; float use_bias; } pc;

void main() {
    uint col = gl_GlobalInvocationID.x, row = gl_GlobalInvocationID.y;
    uint W = uint(pc.w), D = uint(pc.d);
    if (col >= W) return;
    float acc = 0.0;
    for (uint t = 0; t < D; ++t) acc += x[row * D + t] * y[col * D + t];
    result[row * W + col] = (pc.use_bias > 0.5 ? bias[col] : 0.0) + pc.sign * acc;
}
