#version 450
// One underdamped Riemannian Langevin step on the unit sphere per point, fused:
//   v <- e^{-gamma dt} (v - dt P_z grad) + sigma P_z xi,   sigma^2 = (1 - e^{-2 gamma dt}) T
//   z' = exp_z(dt v),  v' = P_z' transport_{z -> z'}(v)
// with grad = splat gradient + context gradient -(beta g + u), xi ~ N(0, I) from a counter-based
// hash of (seed, step, point, coordinate), so a run is reproducible and needs no RNG state.
// It also records E_geo and E_comp at the incoming z; with move = 0 it only records them.
layout(local_size_x = 64) in;
layout(std430, binding = 0) buffer Z { float z[]; };                     // (N, D)
layout(std430, binding = 1) buffer VEL { float v[]; };                   // (N, D)
layout(std430, binding = 2) readonly buffer G { float grad[]; };         // (N, D) splat gradient
layout(std430, binding = 3) readonly buffer BG { float bg[]; };          // (N, D) beta * g
layout(std430, binding = 4) readonly buffer U { float u[]; };            // (N, D)
layout(std430, binding = 5) writeonly buffer GEO { float geo[]; };       // (steps + 1, N)
layout(std430, binding = 6) writeonly buffer COMP { float comp[]; };     // (steps + 1, N)
layout(push_constant) uniform Push {
    float n; float d; float dt; float gamma; float temperature; float seed; float step; float move;
} pc;

uint hash(uint x) {  // lowbias32 (Wellons): a full-avalanche 32-bit mixer
    x ^= x >> 16; x *= 0x7feb352du; x ^= x >> 15; x *= 0x846ca68bu; x ^= x >> 16;
    return x;
}

float normal(uint i, uint t) {  // Box-Muller on two hashed uniforms in (0, 1]
    uint h = hash(hash(hash(uint(pc.seed)) ^ uint(pc.step)) ^ (i * 0x9E3779B9u)) ^ (t * 0x85EBCA6Bu);
    uint a = hash(h), b = hash(a ^ 0x68E31DA4u);
    float u1 = (float(a >> 8) + 1.0) / 16777216.0, u2 = float(b >> 8) / 16777216.0;
    return sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2);
}

float sinc(float x) { return x < 1e-4 ? 1.0 - x * x / 6.0 : sin(x) / x; }

void main() {
    uint i = gl_GlobalInvocationID.x;
    uint N = uint(pc.n), D = uint(pc.d), base = i * D;
    if (i >= N) return;
    float e_geo = 0.0, e_comp = 0.0;
    for (uint t = 0; t < D; ++t) { e_geo -= z[base + t] * bg[base + t]; e_comp -= z[base + t] * u[base + t]; }
    uint slot = uint(pc.step) * N + i;
    geo[slot] = e_geo; comp[slot] = e_comp;
    if (pc.move < 0.5) return;

    float decay = exp(-pc.gamma * pc.dt);
    float sigma = pc.temperature > 0.0 ? sqrt((1.0 - decay * decay) * pc.temperature) : 0.0;
    float zg = 0.0, zxi = 0.0;
    for (uint t = 0; t < D; ++t) {
        zg += z[base + t] * (grad[base + t] - bg[base + t] - u[base + t]);
        if (sigma > 0.0) zxi += z[base + t] * normal(i, t);
    }
    float vv = 0.0;
    for (uint t = 0; t < D; ++t) {
        float zt = z[base + t];
        float gt = grad[base + t] - bg[base + t] - u[base + t];
        float vt = decay * (v[base + t] - pc.dt * (gt - zg * zt));
        if (sigma > 0.0) vt += sigma * (normal(i, t) - zxi * zt);
        v[base + t] = vt;
        vv += vt * vt;
    }
    float theta = pc.dt * sqrt(vv), c = cos(theta), sc = sinc(theta) * pc.dt;
    float yy = 0.0;
    for (uint t = 0; t < D; ++t) { float y = c * z[base + t] + sc * v[base + t]; yy += y * y; }
    float ny = sqrt(yy), yv = 0.0, xy = 0.0;
    for (uint t = 0; t < D; ++t) {
        float y = (c * z[base + t] + sc * v[base + t]) / ny;
        yv += y * v[base + t]; xy += z[base + t] * y;
    }
    float coef = yv / max(1.0 + xy, 1e-6);  // transport along the geodesic z -> y
    float yvp = 0.0;
    for (uint t = 0; t < D; ++t) {
        float y = (c * z[base + t] + sc * v[base + t]) / ny;
        yvp += y * (v[base + t] - coef * (z[base + t] + y));
    }
    for (uint t = 0; t < D; ++t) {  // re-project on T_y against float drift, then move
        float y = (c * z[base + t] + sc * v[base + t]) / ny;
        float vp = v[base + t] - coef * (z[base + t] + y);
        v[base + t] = vp - yvp * y;
        z[base + t] = y;
    }
}
