#version 450
// Energy of every vocabulary token for each context: E[b, w] = E_splat(e_w) - c_b . e_w with
// c_b = beta g_b + u_b (E_geo + E_comp are linear in z). x runs over tokens, y over contexts.
layout(local_size_x = 64) in;
layout(std430, binding = 0) readonly buffer EMB { float emb[]; };        // (V, D)
layout(std430, binding = 1) readonly buffer SV { float splat_vocab[]; }; // (V)
layout(std430, binding = 2) readonly buffer CTX { float ctx[]; };        // (B, D)
layout(std430, binding = 3) writeonly buffer OUT { float energy[]; };    // (B, V)
layout(push_constant) uniform Push { float v; float d; } pc;

void main() {
    uint w = gl_GlobalInvocationID.x, b = gl_GlobalInvocationID.y;
    uint V = uint(pc.v), D = uint(pc.d);
    if (w >= V) return;
    float dot = 0.0;
    for (uint t = 0; t < D; ++t) dot += ctx[b * D + t] * emb[w * D + t];
    energy[b * V + w] = splat_vocab[w] - dot;
}
