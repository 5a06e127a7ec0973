// Launcher of the CUDA engine: the __global__ kernels (one per dtype x n x table placement), the
// launch plan from the device's limits, and error checking of every CUDA call.
//
// The math and the barrier structure are in pid_cuda_kernel.cuh; this file only decides where the
// tables live and how many blocks run:
// * shared tables (the fast path): the theta-weighted tables of one neuron in dynamic shared memory
//   (n = 3, K = 20: 111 KB float32 with the backward table, 74 KB without; 222 KB float64), zeroed
//   whole per neuron, shared-memory atomics;
// * global tables (fallback when they do not fit: n = 4, large K, float64 on small-smem GPUs): a
//   per-block slice of a workspace the wrapper allocates with torch.empty; each neuron zeroes
//   exactly the cells its samples touch before scattering, so the workspace never needs a memset.
// Either way the grid is persistent (at most resident-blocks-per-SM x SMs blocks, each looping over
// neurons), which bounds the workspace by the grid, not by N.
#include <cuda_runtime.h>

#include <stdexcept>
#include <string>
#include <type_traits>

#include "pid_cuda_api.h"
#include "pid_cuda_kernel.cuh"
#include "pid_cuda_params.h"

namespace infomorph {
namespace cudak {

// float32: at most 128 registers, so that two blocks (two neurons' shared tables, 2 x 112 KB for
// n = 3, K = 20) are resident per SM; float64 needs more registers and its tables allow one block.
template <typename T, int kN, bool kSharedTables>
__global__ void __launch_bounds__(kBlockThreads, sizeof(T) == 4 ? 2 : 1)
    pid_fused_kernel(const __grid_constant__ PidParams<T> p) {
    extern __shared__ __align__(16) unsigned char pid_smem[];
    pid_block<T, kN, kSharedTables>(p, pid_smem);
}

namespace {

template <typename T>
const char* dtype_name() {
    return std::is_same<T, double>::value ? "float64" : "float32";
}

void check(cudaError_t err, const std::string& what) {
    if (err != cudaSuccess)
        throw std::runtime_error("backend 'cuda': " + what + " failed: " + cudaGetErrorName(err) + " (" +
                                 cudaGetErrorString(err) + ")");
}

template <typename T, int kN, bool kShared>
std::string kernel_name() {
    return std::string("pid_fused_kernel<") + dtype_name<T>() + ", n=" + std::to_string(kN) +
           (kShared ? ", shared tables>" : ", global tables>");
}

// Calls f(kernel function, name) for the instantiation (T, n, shared).
template <typename T, typename F>
void with_kernel(int n, bool shared, F&& f) {
#define PID_CASE(N_)                                                              \
    case N_:                                                                      \
        if (shared)                                                               \
            f(pid_fused_kernel<T, N_, true>, kernel_name<T, N_, true>());         \
        else                                                                      \
            f(pid_fused_kernel<T, N_, false>, kernel_name<T, N_, false>());       \
        return;
    switch (n) {
        PID_CASE(1)
        PID_CASE(2)
        PID_CASE(3)
        PID_CASE(4)
        default:
            throw std::invalid_argument("backend 'cuda' supports 1..4 sources, got " + std::to_string(n));
    }
#undef PID_CASE
}

template <typename F>
void with_kernel_dtype(bool is_double, int n, bool shared, F&& f) {
    if (is_double)
        with_kernel<double>(n, shared, std::forward<F>(f));
    else
        with_kernel<float>(n, shared, std::forward<F>(f));
}

// Dynamic shared memory above 48 KB must be opted into per kernel (and per device: this is called
// before every launch and every occupancy query; it is a cheap host-side call, no synchronization).
template <typename K>
void configure(K kernel, const std::string& name, int64_t smem_bytes, bool shared) {
    check(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, int(smem_bytes)),
          "cudaFuncSetAttribute(MaxDynamicSharedMemorySize = " + std::to_string(smem_bytes) + ") for " + name);
    if (shared)  // ask for the largest shared-memory carveout: two 111 KB blocks per H100 SM
        check(cudaFuncSetAttribute(kernel, cudaFuncAttributePreferredSharedMemoryCarveout,
                                   int(cudaSharedmemCarveoutMaxShared)),
              "cudaFuncSetAttribute(PreferredSharedMemoryCarveout) for " + name);
}

struct DeviceInfo {
    int sm_count = 0;
    int64_t smem_optin = 0;
    int64_t total_mem = 0;
};

DeviceInfo device_info(int device) {
    DeviceInfo d;
    int v = 0;
    check(cudaDeviceGetAttribute(&v, cudaDevAttrMultiProcessorCount, device), "cudaDeviceGetAttribute(MultiProcessorCount)");
    d.sm_count = v;
    check(cudaDeviceGetAttribute(&v, cudaDevAttrMaxSharedMemoryPerBlockOptin, device),
          "cudaDeviceGetAttribute(MaxSharedMemoryPerBlockOptin)");
    d.smem_optin = v;
    size_t free_b = 0, total_b = 0;
    check(cudaMemGetInfo(&free_b, &total_b), "cudaMemGetInfo");
    d.total_mem = int64_t(total_b);
    return d;
}

void check_current_device(int device) {
    int cur = -1;
    check(cudaGetDevice(&cur), "cudaGetDevice");
    if (device >= 0 && cur != device)
        throw std::runtime_error("backend 'cuda': the tensors are on cuda:" + std::to_string(device) +
                                 " but the current device is cuda:" + std::to_string(cur) +
                                 " (call under `with torch.cuda.device(...)`)");
}

template <typename T>
void launch_typed(const LaunchArgs& a) {
    const int n = int(a.nbins.size());
    const Plan& P = a.plan;
    const PidParams<T> p = make_params<T>(a);
    cudaStream_t stream = reinterpret_cast<cudaStream_t>(a.stream);
    with_kernel<T>(n, P.shared_tables, [&](auto kernel, const std::string& name) {
        configure(kernel, name, P.smem_bytes, P.shared_tables);
        kernel<<<dim3(unsigned(P.grid)), dim3(unsigned(P.threads)), size_t(P.smem_bytes), stream>>>(p);
        check(cudaGetLastError(), "launch of " + name + " (grid " + std::to_string(P.grid) + ", " +
                                      std::to_string(P.threads) + " threads, " + std::to_string(P.smem_bytes) +
                                      " bytes of shared memory)");
    });
}

}  // namespace

Plan pid_cuda_plan(const PlanRequest& req, int device) {
    check_current_device(device);
    int dev = device;
    if (dev < 0) check(cudaGetDevice(&dev), "cudaGetDevice");
    const DeviceInfo info = device_info(dev);
    const int n = int(req.nbins.size());
    auto occupancy = [&](bool shared, int64_t smem) {
        int blocks = 0;
        with_kernel_dtype(req.is_double, n, shared, [&](auto kernel, const std::string& name) {
            configure(kernel, name, smem, shared);
            check(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&blocks, kernel, kBlockThreads, size_t(smem)),
                  "cudaOccupancyMaxActiveBlocksPerMultiprocessor for " + name);
        });
        return blocks;
    };
    if (n < 1 || n > kMaxN)
        throw std::invalid_argument("backend 'cuda' supports 1..4 sources, got " + std::to_string(n));
    return make_plan(req, kBlockThreads, info.smem_optin, info.sm_count, info.total_mem, occupancy);
}

void pid_cuda_launch(const LaunchArgs& a) {
    check_current_device(a.device);
    if (a.plan.threads != kBlockThreads || a.plan.grid < 1)
        throw std::invalid_argument("backend 'cuda': invalid plan (threads " + std::to_string(a.plan.threads) +
                                    ", grid " + std::to_string(a.plan.grid) + ")");
    if (a.is_double)
        launch_typed<double>(a);
    else
        launch_typed<float>(a);
}

std::string pid_cuda_compiled_archs() {
#ifdef __CUDA_ARCH_LIST__
#define PID_STR2(...) #__VA_ARGS__
#define PID_STR(...) PID_STR2(__VA_ARGS__)
    return PID_STR(__CUDA_ARCH_LIST__);
#else
    return "unknown";
#endif
}

int pid_cuda_runtime_version() {
    int v = 0;
    check(cudaRuntimeGetVersion(&v), "cudaRuntimeGetVersion");
    return v;
}

}  // namespace cudak
}  // namespace infomorph
