// CPU emulator of the CUDA engine: the unchanged kernel source (pid_cuda_kernel.cuh) compiled as
// C++20 with PID_CUDA_EMULATE, behind the same plan/launch interface as the real module.
//
// Built by tests/test_backend_cuda.py with the host compiler (optionally with
// -fsanitize=thread) into a shared library loaded with ctypes:
//   g++ -std=c++20 -O1 -fPIC -shared -pthread -DPID_CUDA_EMULATE -Icsrc/common -Icsrc/cuda
//       csrc/cuda/emu/pid_emu.cc -o libpid_emu.so
// Pointers are host addresses of CPU tensors. Device limits (shared memory per block, SMs,
// resident blocks) are arguments, so tests can force the shared- and the global-table variants.
#ifndef PID_CUDA_EMULATE
#define PID_CUDA_EMULATE 1
#endif

#include <cstdint>
#include <cstdio>
#include <exception>
#include <memory>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "pid_cuda_api.h"
#include "pid_cuda_kernel.cuh"
#include "pid_cuda_params.h"

namespace infomorph {
namespace cudak {
namespace emu {
namespace {

void set_error(char* err, int errlen, const std::string& msg) {
    if (err && errlen > 0) std::snprintf(err, size_t(errlen), "%s", msg.c_str());
}

// Runs every block of the grid, one block at a time, each with one std::thread per CUDA thread.
template <typename T, int kN, bool kShared>
void run_grid(const PidParams<T>& p, const Plan& P) {
    for (int64_t blk = 0; blk < P.grid; ++blk) {
        BlockContext ctx;
        ctx.nthreads = P.threads;
        ctx.block = blk;
        ctx.grid = P.grid;
        ctx.block_barrier = std::make_unique<std::barrier<>>(P.threads);
        for (int w = 0; w < P.threads / 32; ++w) ctx.warp_barriers.push_back(std::make_unique<std::barrier<>>(32));
        ctx.exchange.assign(size_t(P.threads), 0);
        // fresh shared memory filled with garbage: the kernel must initialize what it reads
        std::vector<double> smem_store(size_t(P.smem_bytes) / sizeof(double) + 2);
        unsigned char* smem = reinterpret_cast<unsigned char*>(smem_store.data());
        std::memset(smem, 0x7f, size_t(P.smem_bytes));
        std::vector<std::thread> threads;
        threads.reserve(size_t(P.threads));
        for (int t = 0; t < P.threads; ++t) {
            threads.emplace_back([&ctx, &p, smem, t]() {
                t_ctx = &ctx;
                t_tid = t;
                pid_block<T, kN, kShared>(p, smem);
            });
        }
        for (auto& th : threads) th.join();
    }
}

template <typename T>
void launch_typed(const LaunchArgs& a) {
    const PidParams<T> p = make_params<T>(a);
    const bool sh = a.plan.shared_tables;
    switch (a.nbins.size()) {
        case 1: sh ? run_grid<T, 1, true>(p, a.plan) : run_grid<T, 1, false>(p, a.plan); break;
        case 2: sh ? run_grid<T, 2, true>(p, a.plan) : run_grid<T, 2, false>(p, a.plan); break;
        case 3: sh ? run_grid<T, 3, true>(p, a.plan) : run_grid<T, 3, false>(p, a.plan); break;
        case 4: sh ? run_grid<T, 4, true>(p, a.plan) : run_grid<T, 4, false>(p, a.plan); break;
        default: throw std::invalid_argument("backend 'cuda' supports 1..4 sources");
    }
}

}  // namespace
}  // namespace emu
}  // namespace cudak
}  // namespace infomorph

using namespace infomorph::cudak;

// plan_out (13 int64): shared_tables, threads, grid, smem_bytes, table_values, cells, blocks_per_sm,
// sm_count, smem_optin, ws_tables, ws_bins, ws_theta, ws_partial. Returns 0, or 1 (ValueError) / 2 (other) with err set.
extern "C" int pid_emu_plan(int is_double, const int64_t* nbins, int n, int num_antichains, int64_t batch,
                            int64_t neurons, int need_grad, int64_t workspace_budget, int force_tables,
                            int threads, int64_t smem_optin, int sm_count, int blocks_per_sm, int64_t* plan_out,
                            char* err, int errlen) {
    try {
        PlanRequest r;
        r.is_double = is_double != 0;
        r.nbins.assign(nbins, nbins + n);
        r.num_antichains = num_antichains;
        r.batch = batch;
        r.neurons = neurons;
        r.need_grad = need_grad != 0;
        r.workspace_budget = workspace_budget;
        r.force_tables = force_tables;
        const Plan P = make_plan(r, threads, smem_optin, sm_count, int64_t(1) << 34,
                                 [&](bool, int64_t) { return blocks_per_sm; });
        const int64_t v[13] = {P.shared_tables, P.threads,    P.grid,      P.smem_bytes, P.table_values,
                               P.cells,         P.blocks_per_sm, P.sm_count, P.smem_optin, P.ws_tables,
                               P.ws_bins,       P.ws_theta,   P.ws_partial};
        for (int k = 0; k < 13; ++k) plan_out[k] = v[k];
        return 0;
    } catch (const std::invalid_argument& e) {
        emu::set_error(err, errlen, e.what());
        return 1;
    } catch (const std::exception& e) {
        emu::set_error(err, errlen, e.what());
        return 2;
    }
}

extern "C" int pid_emu_launch(const int64_t* plan_in, int is_double, const int64_t* nbins, int n, int num_antichains,
                              int64_t batch, int64_t neurons, int edge_stride, int adaptive, int need_grad,
                              double gamma_h, const uintptr_t* ptrs /* 14 */, char* err, int errlen) {
    try {
        LaunchArgs a;
        Plan& P = a.plan;
        P.shared_tables = plan_in[0] != 0;
        P.threads = int(plan_in[1]);
        P.grid = plan_in[2];
        P.smem_bytes = plan_in[3];
        P.table_values = plan_in[4];
        P.cells = plan_in[5];
        P.blocks_per_sm = int(plan_in[6]);
        P.sm_count = int(plan_in[7]);
        P.smem_optin = plan_in[8];
        P.ws_tables = plan_in[9];
        P.ws_bins = plan_in[10];
        P.ws_theta = plan_in[11];
        P.ws_partial = plan_in[12];
        a.is_double = is_double != 0;
        a.nbins.assign(nbins, nbins + n);
        a.num_antichains = num_antichains;
        a.batch = batch;
        a.neurons = neurons;
        a.edge_stride = edge_stride;
        a.adaptive = adaptive != 0;
        a.need_grad = need_grad != 0;
        a.gamma_h = gamma_h;
        a.x = ptrs[0];
        a.theta = ptrs[1];
        a.edges = ptrs[2];
        a.clamp_lo = ptrs[3];
        a.clamp_hi = ptrs[4];
        a.coef = ptrs[5];
        a.w = ptrs[6];
        a.red = ptrs[7];
        a.h_y = ptrs[8];
        a.dtheta = ptrs[9];
        a.ws_tables = ptrs[10];
        a.ws_bins = ptrs[11];
        a.ws_theta = ptrs[12];
        a.ws_partial = ptrs[13];
        if (a.is_double)
            emu::launch_typed<double>(a);
        else
            emu::launch_typed<float>(a);
        return 0;
    } catch (const std::invalid_argument& e) {
        emu::set_error(err, errlen, e.what());
        return 1;
    } catch (const std::exception& e) {
        emu::set_error(err, errlen, e.what());
        return 2;
    }
}
