// Phase profile of the CPU engine's neuron kernel (single thread, AVX2 + FMA flavour): where a
// neuron's cycles go. Built and driven by bench/cpu_phases.py, which writes the inputs (the
// benchmark suite's layer) to a file; this program runs the layer `reps` times and prints the
// rdtsc cycles of each phase per neuron (per phase the fastest repeat). Not part of the package build.
#define INFOMORPH_PHASE_TIMERS 1
#include <chrono>
#include <cstdio>
#include <algorithm>
#include <cstdlib>
#include <vector>

#include "pid_common.h"
#include "pid_cpu_kernel.h"

using namespace infomorph::cpu;

template <typename V>
static void read_into(FILE* f, V& v, size_t n) {
    v.resize(n);
    if (fread(v.data(), sizeof(v[0]), n, f) != n) { fprintf(stderr, "short read\n"); exit(1); }
}

int main(int argc, char** argv) {
    if (argc < 3) { fprintf(stderr, "usage: cpu_phases CASE_FILE REPS\n"); return 2; }
    FILE* f = fopen(argv[1], "rb");
    if (!f) { perror("open"); return 2; }
    const int reps = atoi(argv[2]);
    std::vector<int64_t> hdr;
    read_into(f, hdr, 6);  // B, N, n, A, K (edges stride - 1), need_grad
    const int64_t B = hdr[0], N = hdr[1], n = hdr[2], A = hdr[3], K = hdr[4];
    const bool grad = hdr[5] != 0, adaptive = false;
    const int S = (1 << n) - 1;
    std::vector<float> x, theta, edges, lo, hi;
    std::vector<int32_t> coef;
    std::vector<double> w;
    read_into(f, x, size_t(B * N * n));
    read_into(f, theta, size_t(B * N));
    read_into(f, edges, size_t(n * (K + 1)));
    read_into(f, lo, size_t(n));
    read_into(f, hi, size_t(n));
    read_into(f, coef, size_t(A * S));
    read_into(f, w, size_t(A + 1));
    fclose(f);
    std::vector<float> xt(x.size()), tt(theta.size());  // [N][n][B], [N][B]
    for (int64_t i = 0; i < B; ++i)
        for (int64_t j = 0; j < N; ++j) {
            for (int64_t q = 0; q < n; ++q) xt[size_t((j * n + q) * B + i)] = x[size_t((i * N + j) * n + q)];
            tt[size_t(j * B + i)] = theta[size_t(i * N + j)];
        }
    std::vector<int64_t> nbins(size_t(n), K);
    LayerPlan plan(nbins, coef.data(), int(A), w.data(), B);
    plan.B = B; plan.N = N; plan.n = int(n); plan.A = int(A); plan.S = S;
    plan.K.assign(nbins.begin(), nbins.end());
    plan.edge_stride = K + 1; plan.adaptive = adaptive; plan.need_grad = grad; plan.gamma_h = w[size_t(A)];
    plan.split_rows(coef.data(), true);
    Workspace ws(plan);
    std::vector<float> red(size_t(N * A)), hy(static_cast<size_t>(N)), dth(size_t(B * N));
    LocalOut<float> lout;
    int st = 0;
    auto fn = n == 2 ? &pid_neuron_avx2<float, 2> : n == 3 ? &pid_neuron_avx2<float, 3> : &pid_neuron_avx2<float, 4>;
    // per phase the fastest of the repeats (this VM's neighbours make single passes noisy)
    std::vector<double> best(16, 1e300);
    double best_us = 1e300;
    for (int r = 0; r < reps + 1; ++r) {
        const auto t0 = std::chrono::steady_clock::now();
        for (auto& c : g_phase_cycles) c = 0;
        for (int64_t j = 0; j < N; ++j)
        {
            // unit sample stride, as the engine reads a transposed block (pid_cpu.cpp run_layer)
            const NeuronIO<float> io{xt.data() + j * n * B, 1, B, tt.data() + j * B, 1, dth.data() + j * B, 1};
            fn(plan, ws, j, io, edges.data(), lo.data(), hi.data(), red.data(), hy.data(), nullptr, st, lout);
        }
        const double us = std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - t0).count() / double(N);
        if (r > 0) best_us = std::min(best_us, us);
        if (r > 0)  // the first pass warms up
            for (int k = 0; k < 16; ++k) best[size_t(k)] = std::min(best[size_t(k)], double(g_phase_cycles[k]));
    }
    for (int k = 0; k < 16; ++k) g_phase_cycles[k] = uint64_t(best[size_t(k)]);
    const char* names[] = {"binning: mass per cell", "fold into subset tables", "gather marginals per cell",
                           "C m (N, D)", "log2 N, log2 D", "redundancies", "local atoms", "bwd: sum_a w_a l_a",
                           "bwd: ratio M / N", "bwd: C^T scatter into T", "write red", "bwd: gather T, dtheta",
                           "reset tables", "binning: bins and cells", "binning: joint-cell slots", "single-subset rows per slot"};
    double total = 0;
    for (int k = 0; k < 16; ++k) total += double(g_phase_cycles[k]);
    const double per = double(N);
    printf("%-28s %12s %7s\n", "phase", "kcycles/neuron", "share");
    for (int k = 0; k < 16; ++k)
        if (g_phase_cycles[k])
            printf("%-28s %12.1f %6.1f%%\n", names[k], g_phase_cycles[k] / per / 1e3, 100.0 * g_phase_cycles[k] / total);
    printf("%-28s %12.1f   (fastest pass: %.1f us per neuron)\n", "total", total / per / 1e3, best_us);
    return 0;
}
