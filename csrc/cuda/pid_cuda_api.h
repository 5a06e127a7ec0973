// Host interface of the CUDA engine between the pybind11 module (pid_cuda_bindings.cpp, compiled by
// the C++ compiler) and the launcher (pid_cuda.cu, compiled by nvcc). Plain C++: no CUDA headers,
// no torch. Pointers are raw device addresses (torch's data_ptr()), the stream is torch's
// cudaStream_t as an integer.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace infomorph {
namespace cudak {

constexpr int kMaxN = 4;            // sources served (templates for n = 1, 2, 3, 4)
constexpr int kMaxS = 15;           // 2^4 - 1 subsets
constexpr int kBlockThreads = 256;  // threads per block on the GPU (__launch_bounds__)

// What the launcher needs to know before the Python wrapper allocates the workspace.
struct PlanRequest {
    bool is_double = false;
    std::vector<int64_t> nbins;   // K_j, one per source (n = nbins.size())
    int num_antichains = 0;       // A (coef rows)
    int64_t batch = 0, neurons = 0;
    bool need_grad = false;
    int64_t workspace_budget = 0; // bytes allowed for global tables (all blocks together)
    int force_tables = -1;        // -1: shared memory when it fits; 0: global; 1: shared (error if it does not fit)
};

struct Plan {
    bool shared_tables = false;   // tables in shared memory (else in the global workspace)
    int threads = 0;              // threads per block
    int64_t grid = 0;             // blocks (each loops over neurons blockIdx, blockIdx + grid, ...)
    int64_t smem_bytes = 0;       // dynamic shared memory per block
    int64_t table_values = 0;     // values (of x's dtype) of the tables of one neuron
    int64_t cells = 0;            // cells of all subset tables of one neuron
    int blocks_per_sm = 0;        // occupancy of the chosen kernel
    int sm_count = 0;
    int64_t smem_optin = 0;       // the device's shared-memory limit per block
    // workspace the wrapper allocates (elements): tables [grid * table_values] of x's dtype (global
    // tables only), bins [grid * B] int32, theta [grid * B] and partial [grid * B] (need_grad
    // only) of x's dtype
    int64_t ws_tables = 0, ws_bins = 0, ws_theta = 0, ws_partial = 0;
};

struct LaunchArgs {
    bool is_double = false;
    std::vector<int64_t> nbins;
    int num_antichains = 0;
    int64_t batch = 0, neurons = 0;
    int edge_stride = 0;
    bool adaptive = false, need_grad = false;
    double gamma_h = 0.0;
    uintptr_t x = 0, theta = 0, edges = 0, clamp_lo = 0, clamp_hi = 0, coef = 0, w = 0;
    uintptr_t red = 0, h_y = 0, dtheta = 0;
    uintptr_t ws_tables = 0, ws_bins = 0, ws_theta = 0, ws_partial = 0;
    Plan plan;
    uintptr_t stream = 0;
    int device = -1;              // the CUDA device the pointers live on (must be current)
};

// Throw std::invalid_argument (-> ValueError) for inputs no launch can serve and
// std::runtime_error (-> RuntimeError) naming the CUDA call that failed.
Plan pid_cuda_plan(const PlanRequest& req, int device);
void pid_cuda_launch(const LaunchArgs& args);
// e.g. "800,900" - the SASS/PTX targets this module was compiled for
std::string pid_cuda_compiled_archs();
int pid_cuda_runtime_version();

}  // namespace cudak
}  // namespace infomorph
