#version 450
// out[b, w] = bias[w] + sign * x_b . y_w for rows x (B, D) and y (W, D): the splat scores of a
// nearest-neighbour search (sign 1, no bias) and the vocabulary energies of contexts (sign -1,
// bias E_splat(e_w)). One 16 x 16 tile of outputs per workgroup; 16-wide slices of x and y are
// staged in shared memory, so each value read from a buffer serves 16 outputs instead of one.
// The sum runs over t in order, as a plain loop would.
layout(local_size_x = 16, local_size_y = 16) in;
layout(std430, binding = 0) readonly buffer X { float x[]; };            // (B, D)
layout(std430, binding = 1) readonly buffer Y { float y[]; };            // (W, D)
layout(std430, binding = 2) readonly buffer BIAS { float bias[]; };      // (W), or unread
layout(std430, binding = 3) writeonly buffer OUT { float result[]; };    // (B, W)
layout(push_constant) uniform Push { float b; float w; float d; float sign; float use_bias; } pc;
const uint TILE = 16;
shared float xs[TILE][TILE + 1];  // + 1: consecutive rows fall in different banks
shared float ys[TILE][TILE + 1];

void main() {
    uint B = uint(pc.b), W = uint(pc.w), D = uint(pc.d);
    uint lx = gl_LocalInvocationID.x, ly = gl_LocalInvocationID.y;
    uint row = gl_WorkGroupID.y * TILE + ly, col = gl_WorkGroupID.x * TILE + lx;
    uint y_row = gl_WorkGroupID.x * TILE + ly;  // the row of y this invocation stages
    float acc = 0.0;
    for (uint t0 = 0; t0 < D; t0 += TILE) {  // no early return: every invocation meets the barriers
        uint t = t0 + lx;
        xs[ly][lx] = (row < B && t < D) ? x[row * D + t] : 0.0;
        ys[ly][lx] = (y_row < W && t < D) ? y[y_row * D + t] : 0.0;
        barrier();
        for (uint j = 0; j < TILE; ++j) acc += xs[ly][j] * ys[lx][j];
        barrier();
    }
    if (row < B && col < W) result[row * W + col] = (pc.use_bias > 0.5 ? bias[col] : 0.0) + pc.sign * acc;
}
