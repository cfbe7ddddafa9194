#include "hiq/dist/mpi.h"

#include <cstdlib>
#include <limits>
#include <memory>

#include "hiq/base/error.h"     // MpiError
#include "hiq/base/watchdog.h"  // PeerWait

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
MPI_Datatype TypeOf<float>() {
  return MPI_FLOAT;
}
template <>
MPI_Datatype TypeOf<double>() {
  return MPI_DOUBLE;
}
template <>
MPI_Datatype TypeOf<int32_t>() {
  return MPI_INT32_T;
}
template <>
MPI_Datatype TypeOf<char>() {
  return MPI_CHAR;
}

// MPI counts are ints; a larger message is an error, not a silent truncation.
int CountOf(size_t n, const char* call) {
  if (n > static_cast<size_t>(std::numeric_limits<int>::max())) {
    throw MpiError(std::string(call) + ": " + std::to_string(n) +
                   " values do not fit one MPI message");
  }
  return static_cast<int>(n);
}

// Comm::collective_bytes() bookkeeping. A broadcast's `bytes` leave the root for every other
// rank.
uint64_t FromRoot(size_t bytes, int rank, int size, int root) {
  return rank == root ? bytes * static_cast<size_t>(size - 1) : 0;
}
// A gather's `bytes` leave every rank but the root for it, or for every other rank (root < 0).
uint64_t ToRoot(size_t bytes, int rank, int size, int root) {
  if (root < 0) return bytes * static_cast<size_t>(size - 1);
  return rank != root ? bytes : 0;
}

// Root's container (a string or vector) on every rank, its size broadcast first; the root's
// bytes are added to `sent`.
template <typename Container>
void BroadcastSized(MPI_Comm comm, int rank, int size, Container& values, int root,
                    uint64_t& sent) {
  int64_t n = static_cast<int64_t>(values.size());
  Check(MPI_Bcast(&n, 1, MPI_INT64_T, root, comm), "MPI_Bcast", root);
  values.resize(static_cast<size_t>(n));
  using T = typename Container::value_type;
  Check(MPI_Bcast(values.data(), CountOf(values.size(), "MPI_Bcast"), TypeOf<T>(), root, comm),
        "MPI_Bcast", root);
  sent += FromRoot(sizeof n + values.size() * sizeof(T), rank, size, root);
}

// Every rank's `local` values, concatenated in rank order, with each rank's count: on `root`
// (root >= 0; empty elsewhere) or on every rank (root < 0). This rank's bytes are added to `sent`.
template <typename T>
std::vector<T> GatherConcat(MPI_Comm comm, int rank, int size, std::span<const T> local, int root,
                            std::vector<int>& counts, uint64_t& sent) {
  // The root waits for every rank, the others for the root (the other one of two ranks).
  const PeerWait wait(size == 2 ? 1 - rank : (root < 0 || rank == root ? -1 : root),
                      root < 0 ? "MPI_Allgather" : "MPI_Gather");
  const int n = CountOf(local.size(), "MPI_Gatherv");
  counts.assign(static_cast<size_t>(size), 0);
  if (root < 0) {
    Check(MPI_Allgather(&n, 1, MPI_INT, counts.data(), 1, MPI_INT, comm), "MPI_Allgather");
  } else {
    Check(MPI_Gather(&n, 1, MPI_INT, counts.data(), 1, MPI_INT, root, comm), "MPI_Gather", root);
  }
  std::vector<int> offsets(static_cast<size_t>(size), 0);
  size_t total = 0;
  for (size_t r = 0; r < offsets.size(); ++r) {
    offsets[r] = CountOf(total, "MPI_Gatherv");
    total += static_cast<size_t>(counts[r]);
  }
  std::vector<T> all(root < 0 || rank == root ? total : 0);
  if (root < 0) {
    Check(MPI_Allgatherv(local.data(), n, TypeOf<T>(), all.data(), counts.data(), offsets.data(),
                         TypeOf<T>(), comm),
          "MPI_Allgatherv");
  } else {
    Check(MPI_Gatherv(local.data(), n, TypeOf<T>(), all.data(), counts.data(), offsets.data(),
                      TypeOf<T>(), root, comm),
          "MPI_Gatherv", root);
  }
  sent += ToRoot(sizeof n + local.size_bytes(), rank, size, root);
  return all;
}

// Strings (or lists) joined for one message; `lengths` says where each one ends.
template <typename Part>
std::vector<typename Part::value_type> Join(const std::vector<Part>& parts,
                                            std::vector<int32_t>& lengths) {
  std::vector<typename Part::value_type> joined;
  for (const Part& part : parts) {
    lengths.push_back(CountOf(part.size(), "hiq::Comm"));
    joined.insert(joined.end(), part.begin(), part.end());
  }
  return joined;
}

// The inverse of Join over the gathered pieces.
template <typename Part>
std::vector<Part> Split(const std::vector<typename Part::value_type>& joined,
                        const std::vector<int32_t>& lengths) {
  std::vector<Part> parts;
  size_t at = 0;
  for (int32_t n : lengths) {
    parts.emplace_back(joined.begin() + static_cast<ptrdiff_t>(at),
                       joined.begin() + static_cast<ptrdiff_t>(at + static_cast<size_t>(n)));
    at += static_cast<size_t>(n);
  }
  return parts;
}

// Every rank's `local` parts (strings or lists), concatenated in rank order: on `root`
// (root >= 0; empty elsewhere) or on every rank (root < 0).
template <typename Part>
std::vector<Part> GatherParts(MPI_Comm comm, int rank, int size, const std::vector<Part>& local,
                              int root, uint64_t& sent) {
  using T = typename Part::value_type;
  std::vector<int32_t> lengths;
  const std::vector<T> joined = Join(local, lengths);
  std::vector<int> counts;
  const std::vector<int32_t> all_lengths =
      GatherConcat<int32_t>(comm, rank, size, lengths, root, counts, sent);
  const std::vector<T> all = GatherConcat<T>(comm, rank, size, joined, root, counts, sent);
  return Split<Part>(all, all_lengths);
}

template <typename T>
void RecvExact(MPI_Comm comm, std::span<T> data, int source, int tag) {
  const PeerWait wait(source, "MPI_Recv");
  MPI_Status status;
  Check(
      MPI_Recv(data.data(), static_cast<int>(data.size()), TypeOf<T>(), source, tag, comm, &status),
      "MPI_Recv", source);
  int count = 0;
  Check(MPI_Get_count(&status, TypeOf<T>(), &count), "MPI_Get_count", source);
  if (static_cast<size_t>(count) != data.size()) {
    throw MpiError("MPI_Recv from rank " + std::to_string(source) + " (tag " + std::to_string(tag) +
                   "): got " + std::to_string(count) + " values, expected " +
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
  const PeerWait wait(-1, "MPI_Finalize");  // every rank takes part
  if (!finalized) MPI_Finalize();
}

SendRequest::SendRequest(SendRequest&& other) noexcept
    : request_(other.request_), peer_(other.peer_) {
  other.request_ = MPI_REQUEST_NULL;
}

SendRequest& SendRequest::operator=(SendRequest&& other) noexcept {
  if (this != &other) {
    if (request_ != MPI_REQUEST_NULL) {
      const PeerWait wait(peer_, "MPI_Wait (a send)");
      MPI_Wait(&request_, MPI_STATUS_IGNORE);
    }
    request_ = other.request_;
    peer_ = other.peer_;
    other.request_ = MPI_REQUEST_NULL;
  }
  return *this;
}

SendRequest::~SendRequest() {
  if (request_ != MPI_REQUEST_NULL) {
    const PeerWait wait(peer_, "MPI_Wait (a send)");
    MPI_Wait(&request_, MPI_STATUS_IGNORE);
  }
}

void SendRequest::Wait() {
  if (request_ == MPI_REQUEST_NULL) return;
  const PeerWait wait(peer_, "MPI_Wait (a send)");
  Check(MPI_Wait(&request_, MPI_STATUS_IGNORE), "MPI_Wait", peer_);
}

Comm::Comm(MPI_Comm comm, int rank, int size)
    : comm_(comm), rank_(rank), size_(size), traffic_(std::make_shared<Traffic>()) {}

int Comm::CollectivePeer(int root) const {
  if (size_ == 2) return 1 - rank_;
  return root >= 0 && root != rank_ ? root : -1;
}

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

void Comm::AbortWorld(int code) {
  MPI_Abort(MPI_COMM_WORLD, code);
  std::_Exit(code);  // MPI_Abort should not return; if it does, this process still ends
}

Comm Comm::Self() {
  int initialized = 0;
  MPI_Initialized(&initialized);
  if (!initialized) throw MpiError("Comm::Self: MPI is not initialised (no MpiSession)");
  Check(MPI_Comm_set_errhandler(MPI_COMM_SELF, MPI_ERRORS_RETURN), "MPI_Comm_set_errhandler");
  return Comm(MPI_COMM_SELF, 0, 1);
}

void Comm::Send(std::span<const float> data, int dest, int tag) const {
  const PeerWait wait(dest, "MPI_Send");
  Check(MPI_Send(data.data(), static_cast<int>(data.size()), MPI_FLOAT, dest, tag, comm_),
        "MPI_Send", dest);
  traffic_->p2p += data.size_bytes();
}

SendRequest Comm::Isend(std::span<const float> data, int dest, int tag) const {
  MPI_Request request;
  Check(
      MPI_Isend(data.data(), static_cast<int>(data.size()), MPI_FLOAT, dest, tag, comm_, &request),
      "MPI_Isend", dest);
  traffic_->p2p += data.size_bytes();
  return SendRequest(request, dest);
}

void Comm::Recv(std::span<float> data, int source, int tag) const {
  RecvExact(comm_, data, source, tag);
}

void Comm::Send(std::span<const double> data, int dest, int tag) const {
  const PeerWait wait(dest, "MPI_Send");
  Check(MPI_Send(data.data(), static_cast<int>(data.size()), MPI_DOUBLE, dest, tag, comm_),
        "MPI_Send", dest);
  traffic_->p2p += data.size_bytes();
}

void Comm::Recv(std::span<double> data, int source, int tag) const {
  RecvExact(comm_, data, source, tag);
}

void Comm::Barrier() const {
  const PeerWait wait(CollectivePeer(-1), "MPI_Barrier");
  Check(MPI_Barrier(comm_), "MPI_Barrier");
}

void Comm::Broadcast(std::span<double> data, int root) const {
  const PeerWait wait(CollectivePeer(root), "MPI_Bcast");
  Check(MPI_Bcast(data.data(), static_cast<int>(data.size()), MPI_DOUBLE, root, comm_), "MPI_Bcast",
        root);
  traffic_->collective += FromRoot(data.size_bytes(), rank_, size_, root);
}

void Comm::Broadcast(std::span<int32_t> data, int root) const {
  const PeerWait wait(CollectivePeer(root), "MPI_Bcast");
  Check(MPI_Bcast(data.data(), static_cast<int>(data.size()), MPI_INT32_T, root, comm_),
        "MPI_Bcast", root);
  traffic_->collective += FromRoot(data.size_bytes(), rank_, size_, root);
}

void Comm::Broadcast(std::string& text, int root) const {
  const PeerWait wait(CollectivePeer(root), "MPI_Bcast");
  BroadcastSized(comm_, rank_, size_, text, root, traffic_->collective);
}

void Comm::Broadcast(std::vector<double>& values, int root) const {
  const PeerWait wait(CollectivePeer(root), "MPI_Bcast");
  BroadcastSized(comm_, rank_, size_, values, root, traffic_->collective);
}

void Comm::Broadcast(std::vector<int32_t>& values, int root) const {
  const PeerWait wait(CollectivePeer(root), "MPI_Bcast");
  BroadcastSized(comm_, rank_, size_, values, root, traffic_->collective);
}

void Comm::Broadcast(double& value, int root) const {
  const PeerWait wait(CollectivePeer(root), "MPI_Bcast");
  Check(MPI_Bcast(&value, 1, MPI_DOUBLE, root, comm_), "MPI_Bcast", root);
  traffic_->collective += FromRoot(sizeof value, rank_, size_, root);
}

void Comm::Broadcast(int& value, int root) const {
  const PeerWait wait(CollectivePeer(root), "MPI_Bcast");
  Check(MPI_Bcast(&value, 1, MPI_INT, root, comm_), "MPI_Bcast", root);
  traffic_->collective += FromRoot(sizeof value, rank_, size_, root);
}

void Comm::Broadcast(bool& value, int root) const {
  int v = value ? 1 : 0;
  Broadcast(v, root);
  value = v != 0;
}

std::vector<std::string> Comm::Gather(const std::string& local, int root) const {
  std::vector<int> counts;
  const std::vector<char> all = GatherConcat<char>(
      comm_, rank_, size_, std::span<const char>(local), root, counts, traffic_->collective);
  if (rank_ != root) return {};
  return Split<std::string>(all, std::vector<int32_t>(counts.begin(), counts.end()));
}

std::vector<std::string> Comm::GatherStrings(const std::vector<std::string>& local,
                                             int root) const {
  return GatherParts(comm_, rank_, size_, local, root, traffic_->collective);
}

std::vector<double> Comm::AllGather(std::span<const double> local) const {
  std::vector<int> counts;
  return GatherConcat<double>(comm_, rank_, size_, local, -1, counts, traffic_->collective);
}

std::vector<std::vector<int32_t>> Comm::AllGather(
    const std::vector<std::vector<int32_t>>& local) const {
  return GatherParts(comm_, rank_, size_, local, -1, traffic_->collective);
}

bool Comm::AllTrue(bool local) const {
  const PeerWait wait(CollectivePeer(-1), "MPI_Allreduce");
  int in = local ? 1 : 0, out = 0;
  Check(MPI_Allreduce(&in, &out, 1, MPI_INT, MPI_MIN, comm_), "MPI_Allreduce");
  traffic_->collective += ToRoot(sizeof in, rank_, size_, -1);
  return out == 1;
}

double Comm::AllMax(double local) const {
  const PeerWait wait(CollectivePeer(-1), "MPI_Allreduce");
  double out = 0;
  Check(MPI_Allreduce(&local, &out, 1, MPI_DOUBLE, MPI_MAX, comm_), "MPI_Allreduce");
  traffic_->collective += ToRoot(sizeof local, rank_, size_, -1);
  return out;
}

double Comm::AllSum(double local) const {
  const PeerWait wait(CollectivePeer(-1), "MPI_Allreduce");
  double out = 0;
  Check(MPI_Allreduce(&local, &out, 1, MPI_DOUBLE, MPI_SUM, comm_), "MPI_Allreduce");
  traffic_->collective += ToRoot(sizeof local, rank_, size_, -1);
  return out;
}

}  // namespace hiq
