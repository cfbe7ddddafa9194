#include "hiq/dist/mpi.h"

#include <memory>

#include "hiq/base/error.h"  // MpiError

namespace hiq {
namespace {

void Check(int code, const char* call, int peer = -1) {
  if (code == MPI_SUCCESS) return;
  char text[MPI_MAX_ERROR_STRING];
  int len = 0;
  MPI_Error_string(code, text, &len);
  int rank = -1;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  std::string msg = std::string(call) + " failed on rank " + std::to_string(rank);
  if (peer >= 0) msg += " (peer rank " + std::to_string(peer) + ")";
  throw MpiError(msg + ": " + std::string(text, static_cast<size_t>(len)));
}

template <typename T>
MPI_Datatype TypeOf();
template <>
MPI_Datatype TypeOf<float>() { return MPI_FLOAT; }
template <>
MPI_Datatype TypeOf<double>() { return MPI_DOUBLE; }

template <typename T>
void RecvExact(MPI_Comm comm, std::span<T> data, int source, int tag) {
  MPI_Status status;
  Check(MPI_Recv(data.data(), static_cast<int>(data.size()), TypeOf<T>(), source, tag, comm,
                 &status),
        "MPI_Recv", source);
  int count = 0;
  Check(MPI_Get_count(&status, TypeOf<T>(), &count), "MPI_Get_count", source);
  if (static_cast<size_t>(count) != data.size()) {
    throw MpiError("MPI_Recv from rank " + std::to_string(source) + " (tag " +
                   std::to_string(tag) + "): got " + std::to_string(count) + " values, expected " +
                   std::to_string(data.size()));
  }
}

}  // namespace

MpiSession::MpiSession(int* argc, char*** argv) {
  int provided = 0;
  MPI_Init_thread(argc, argv, MPI_THREAD_FUNNELED, &provided);
}

MpiSession::~MpiSession() {
  int finalized = 0;
  MPI_Finalized(&finalized);
  if (!finalized) MPI_Finalize();
}

SendRequest::SendRequest(SendRequest&& other) noexcept : request_(other.request_) {
  other.request_ = MPI_REQUEST_NULL;
}

SendRequest& SendRequest::operator=(SendRequest&& other) noexcept {
  if (this != &other) {
    if (request_ != MPI_REQUEST_NULL) MPI_Wait(&request_, MPI_STATUS_IGNORE);
    request_ = other.request_;
    other.request_ = MPI_REQUEST_NULL;
  }
  return *this;
}

SendRequest::~SendRequest() {
  if (request_ != MPI_REQUEST_NULL) MPI_Wait(&request_, MPI_STATUS_IGNORE);
}

void SendRequest::Wait() {
  if (request_ != MPI_REQUEST_NULL) Check(MPI_Wait(&request_, MPI_STATUS_IGNORE), "MPI_Wait");
}

Comm::Comm(MPI_Comm comm, int rank, int size)
    : comm_(comm), rank_(rank), size_(size), bytes_sent_(std::make_shared<uint64_t>(0)) {}

Comm Comm::World() {
  int initialized = 0;
  MPI_Initialized(&initialized);
  if (!initialized) throw MpiError("Comm::World: MPI is not initialised (no MpiSession)");
  Check(MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN), "MPI_Comm_set_errhandler");
  int rank = 0, size = 1;
  Check(MPI_Comm_rank(MPI_COMM_WORLD, &rank), "MPI_Comm_rank");
  Check(MPI_Comm_size(MPI_COMM_WORLD, &size), "MPI_Comm_size");
  return Comm(MPI_COMM_WORLD, rank, size);
}

Comm Comm::Self() {
  int initialized = 0;
  MPI_Initialized(&initialized);
  if (!initialized) throw MpiError("Comm::Self: MPI is not initialised (no MpiSession)");
  Check(MPI_Comm_set_errhandler(MPI_COMM_SELF, MPI_ERRORS_RETURN), "MPI_Comm_set_errhandler");
  return Comm(MPI_COMM_SELF, 0, 1);
}

void Comm::Send(std::span<const float> data, int dest, int tag) const {
  Check(MPI_Send(data.data(), static_cast<int>(data.size()), MPI_FLOAT, dest, tag, comm_),
        "MPI_Send", dest);
  *bytes_sent_ += data.size_bytes();
}

SendRequest Comm::Isend(std::span<const float> data, int dest, int tag) const {
  MPI_Request request;
  Check(MPI_Isend(data.data(), static_cast<int>(data.size()), MPI_FLOAT, dest, tag, comm_,
                  &request),
        "MPI_Isend", dest);
  *bytes_sent_ += data.size_bytes();
  return SendRequest(request);
}

void Comm::Recv(std::span<float> data, int source, int tag) const {
  RecvExact(comm_, data, source, tag);
}

void Comm::Send(std::span<const double> data, int dest, int tag) const {
  Check(MPI_Send(data.data(), static_cast<int>(data.size()), MPI_DOUBLE, dest, tag, comm_),
        "MPI_Send", dest);
  *bytes_sent_ += data.size_bytes();
}

void Comm::Recv(std::span<double> data, int source, int tag) const {
  RecvExact(comm_, data, source, tag);
}

void Comm::Barrier() const { Check(MPI_Barrier(comm_), "MPI_Barrier"); }

void Comm::Broadcast(std::span<double> data, int root) const {
  Check(MPI_Bcast(data.data(), static_cast<int>(data.size()), MPI_DOUBLE, root, comm_),
        "MPI_Bcast", root);
}

void Comm::Broadcast(std::span<int32_t> data, int root) const {
  Check(MPI_Bcast(data.data(), static_cast<int>(data.size()), MPI_INT32_T, root, comm_),
        "MPI_Bcast", root);
}

void Comm::Broadcast(std::string& text, int root) const {
  int64_t n = static_cast<int64_t>(text.size());
  Check(MPI_Bcast(&n, 1, MPI_INT64_T, root, comm_), "MPI_Bcast", root);
  text.resize(static_cast<size_t>(n));
  Check(MPI_Bcast(text.data(), static_cast<int>(n), MPI_CHAR, root, comm_), "MPI_Bcast", root);
}

std::vector<std::string> Comm::Gather(const std::string& local, int root) const {
  int n = static_cast<int>(local.size());
  std::vector<int> sizes(static_cast<size_t>(size_));
  Check(MPI_Gather(&n, 1, MPI_INT, sizes.data(), 1, MPI_INT, root, comm_), "MPI_Gather", root);
  std::vector<int> offsets(static_cast<size_t>(size_), 0);
  int total = 0;
  for (int r = 0; r < size_; ++r) {
    offsets[static_cast<size_t>(r)] = total;
    total += sizes[static_cast<size_t>(r)];
  }
  std::string all(static_cast<size_t>(rank_ == root ? total : 0), '\0');
  Check(MPI_Gatherv(local.data(), n, MPI_CHAR, all.data(), sizes.data(), offsets.data(), MPI_CHAR,
                    root, comm_),
        "MPI_Gatherv", root);
  std::vector<std::string> parts;
  if (rank_ == root) {
    for (int r = 0; r < size_; ++r) {
      parts.push_back(all.substr(static_cast<size_t>(offsets[static_cast<size_t>(r)]),
                                 static_cast<size_t>(sizes[static_cast<size_t>(r)])));
    }
  }
  return parts;
}

bool Comm::AllTrue(bool local) const {
  int in = local ? 1 : 0, out = 0;
  Check(MPI_Allreduce(&in, &out, 1, MPI_INT, MPI_MIN, comm_), "MPI_Allreduce");
  return out == 1;
}

double Comm::AllMax(double local) const {
  double out = 0;
  Check(MPI_Allreduce(&local, &out, 1, MPI_DOUBLE, MPI_MAX, comm_), "MPI_Allreduce");
  return out;
}

double Comm::AllSum(double local) const {
  double out = 0;
  Check(MPI_Allreduce(&local, &out, 1, MPI_DOUBLE, MPI_SUM, comm_), "MPI_Allreduce");
  return out;
}

}  // namespace hiq
