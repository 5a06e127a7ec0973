// pybind11 module infomorph_kernels._cuda: the fused I_sx PID engine on the GPU.
//
// The Python wrapper (infomorph_kernels/cuda_backend.py) validates the tensors, asks plan() where
// the tables go and how much workspace to allocate, allocates outputs and workspace with torch and
// passes raw device pointers and torch's current stream as ints to launch(). No torch headers here
// (fast build, no torch C++ ABI coupling); importing this module makes no CUDA call, so it imports
// on machines without a GPU or driver.
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cstdint>
#include <string>
#include <vector>

#include "pid_cuda_api.h"

namespace py = pybind11;
using namespace infomorph::cudak;

namespace {

py::dict plan_to_dict(const Plan& P) {
    py::dict d;
    d["shared_tables"] = P.shared_tables;
    d["threads"] = P.threads;
    d["grid"] = P.grid;
    d["smem_bytes"] = P.smem_bytes;
    d["table_values"] = P.table_values;
    d["cells"] = P.cells;
    d["blocks_per_sm"] = P.blocks_per_sm;
    d["sm_count"] = P.sm_count;
    d["smem_optin"] = P.smem_optin;
    d["ws_tables"] = P.ws_tables;
    d["ws_bins"] = P.ws_bins;
    d["ws_theta"] = P.ws_theta;
    d["ws_partial"] = P.ws_partial;
    return d;
}

Plan plan_from_dict(const py::dict& d) {
    Plan P;
    P.shared_tables = d["shared_tables"].cast<bool>();
    P.threads = d["threads"].cast<int>();
    P.grid = d["grid"].cast<int64_t>();
    P.smem_bytes = d["smem_bytes"].cast<int64_t>();
    P.table_values = d["table_values"].cast<int64_t>();
    P.cells = d["cells"].cast<int64_t>();
    P.blocks_per_sm = d["blocks_per_sm"].cast<int>();
    P.sm_count = d["sm_count"].cast<int>();
    P.smem_optin = d["smem_optin"].cast<int64_t>();
    P.ws_tables = d["ws_tables"].cast<int64_t>();
    P.ws_bins = d["ws_bins"].cast<int64_t>();
    P.ws_theta = d["ws_theta"].cast<int64_t>();
    P.ws_partial = d["ws_partial"].cast<int64_t>();
    return P;
}

}  // namespace

PYBIND11_MODULE(_cuda, m) {
    m.doc() = "Fused I_sx PID engine on CUDA GPUs (docs/kernel_contract.md); use infomorph_kernels.cuda_backend";

    m.def(
        "plan",
        [](bool is_double, std::vector<int64_t> nbins, int num_antichains, int64_t batch, int64_t neurons,
           bool need_grad, int64_t workspace_budget, int force_tables, int device) {
            PlanRequest r;
            r.is_double = is_double;
            r.nbins = std::move(nbins);
            r.num_antichains = num_antichains;
            r.batch = batch;
            r.neurons = neurons;
            r.need_grad = need_grad;
            r.workspace_budget = workspace_budget;
            r.force_tables = force_tables;
            Plan P;
            {
                py::gil_scoped_release release;
                P = pid_cuda_plan(r, device);
            }
            return plan_to_dict(P);
        },
        py::arg("is_double"), py::arg("nbins"), py::arg("num_antichains"), py::arg("batch"), py::arg("neurons"),
        py::arg("need_grad"), py::arg("workspace_budget"), py::arg("force_tables"), py::arg("device"),
        "Where the tables go, the grid, and the workspace sizes (elements) for one call shape. "
        "Raises ValueError when the tables cannot be served.");

    m.def(
        "launch",
        [](const py::dict& plan, bool is_double, std::vector<int64_t> nbins, int num_antichains, int64_t batch,
           int64_t neurons, int edge_stride, bool adaptive, bool need_grad, double gamma_h, uintptr_t x,
           uintptr_t theta, uintptr_t edges, uintptr_t clamp_lo, uintptr_t clamp_hi, uintptr_t coef, uintptr_t w,
           uintptr_t red, uintptr_t h_y, uintptr_t dtheta, uintptr_t ws_tables, uintptr_t ws_bins,
           uintptr_t ws_theta, uintptr_t ws_partial, uintptr_t stream, int device) {
            LaunchArgs a;
            a.plan = plan_from_dict(plan);
            a.is_double = is_double;
            a.nbins = std::move(nbins);
            a.num_antichains = num_antichains;
            a.batch = batch;
            a.neurons = neurons;
            a.edge_stride = edge_stride;
            a.adaptive = adaptive;
            a.need_grad = need_grad;
            a.gamma_h = gamma_h;
            a.x = x;
            a.theta = theta;
            a.edges = edges;
            a.clamp_lo = clamp_lo;
            a.clamp_hi = clamp_hi;
            a.coef = coef;
            a.w = w;
            a.red = red;
            a.h_y = h_y;
            a.dtheta = dtheta;
            a.ws_tables = ws_tables;
            a.ws_bins = ws_bins;
            a.ws_theta = ws_theta;
            a.ws_partial = ws_partial;
            a.stream = stream;
            a.device = device;
            py::gil_scoped_release release;
            pid_cuda_launch(a);
        },
        py::arg("plan"), py::arg("is_double"), py::arg("nbins"), py::arg("num_antichains"), py::arg("batch"),
        py::arg("neurons"), py::arg("edge_stride"), py::arg("adaptive"), py::arg("need_grad"), py::arg("gamma_h"),
        py::arg("x"), py::arg("theta"), py::arg("edges"), py::arg("clamp_lo"), py::arg("clamp_hi"), py::arg("coef"),
        py::arg("w"), py::arg("red"), py::arg("h_y"), py::arg("dtheta"), py::arg("ws_tables"), py::arg("ws_bins"),
        py::arg("ws_theta"), py::arg("ws_partial"), py::arg("stream"), py::arg("device"),
        "Enqueue the fused kernel on `stream` (asynchronous: no host synchronization).");

    m.def("compiled_archs", &pid_cuda_compiled_archs, "The __CUDA_ARCH_LIST__ this module was built for");
    m.def("runtime_version", &pid_cuda_runtime_version, "cudaRuntimeGetVersion() of the linked CUDA runtime");
    m.attr("BLOCK_THREADS") = kBlockThreads;
    m.attr("MAX_SOURCES") = kMaxN;
}
