// hiq/dist/mpi.h - the one place hiq talks to MPI: a thin communicator wrapper.
//
// Every MPI call hiq's library and CLI make is made here, with MPI_ERRORS_RETURN set so that a
// failure becomes an MpiError (naming the call and the peer rank) instead of Open MPI's default
// abort without context. The one raw communicator that leaves is native(), for HDF5's MPI-IO
// driver. Collectives are typed (doubles, int32s, strings): callers never pack bytes. Numerical
// modules never include this header; the pipeline, io (parallel HDF5) and stage layers and main()
// do.
//
// Ownership: Comm does not own MPI_COMM_WORLD; MpiSession (one per process, in main) owns
// MPI_Init/MPI_Finalize. Not thread-safe: one thread per rank talks to MPI. Every blocking call
// is a PeerWait naming the rank it waits for, which the stall watchdog reports when the wait
// outlasts --stall-timeout (hiq/base/watchdog.h).
#pragma once

#include <mpi.h>

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

namespace hiq {

// RAII MPI_Init / MPI_Finalize for main().
class MpiSession {
 public:
  MpiSession(int* argc, char*** argv);
  ~MpiSession();
  MpiSession(const MpiSession&) = delete;
  MpiSession& operator=(const MpiSession&) = delete;
};

// A pending non-blocking send; Wait() before the buffer is reused. The destructor waits too,
// so a buffer can never be freed under an in-flight send.
class SendRequest {
 public:
  SendRequest() = default;
  // `peer` is the destination, the rank a wait on this send waits for (hiq/base/watchdog.h).
  SendRequest(MPI_Request request, int peer) : request_(request), peer_(peer) {}
  SendRequest(SendRequest&& other) noexcept;
  SendRequest& operator=(SendRequest&& other) noexcept;
  ~SendRequest();
  void Wait();

 private:
  MPI_Request request_ = MPI_REQUEST_NULL;
  int peer_ = -1;
};

class Comm {
 public:
  // MPI_COMM_WORLD with errors returned to us. Requires an MpiSession.
  static Comm World();
  // This process alone (MPI_COMM_SELF): a one-rank pipeline beside the world one, so that tests
  // can compare a P-rank result with the one-process result inside the same job.
  static Comm Self();

  // Takes every rank of MPI_COMM_WORLD down with `code` (main()'s last resort, so that no rank
  // is left waiting in a collective). Never returns.
  [[noreturn]] static void AbortWorld(int code);

  int rank() const { return rank_; }
  int size() const { return size_; }
  // The communicator itself, for HDF5's MPI-IO driver (H5Pset_fapl_mpio) only: every other use
  // of MPI goes through the methods below.
  MPI_Comm native() const { return comm_; }

  // Point-to-point messages of floats or doubles; the receive size must match the sent size
  // exactly (MpiError otherwise).
  void Send(std::span<const float> data, int dest, int tag) const;
  SendRequest Isend(std::span<const float> data, int dest, int tag) const;
  void Recv(std::span<float> data, int source, int tag) const;
  void Send(std::span<const double> data, int dest, int tag) const;
  void Recv(std::span<double> data, int source, int tag) const;

  void Barrier() const;
  // Broadcasts from `root` in place; `data` has the same size on every rank.
  void Broadcast(std::span<double> data, int root) const;
  void Broadcast(std::span<int32_t> data, int root) const;
  // Broadcasts root's value; only the root need know its size (the others' values are replaced).
  void Broadcast(std::string& text, int root) const;
  void Broadcast(std::vector<double>& values, int root) const;
  void Broadcast(std::vector<int32_t>& values, int root) const;
  // Broadcasts root's single value.
  void Broadcast(double& value, int root) const;
  void Broadcast(int& value, int root) const;
  void Broadcast(bool& value, int root) const;
  // Every rank's `local` string, one per rank in rank order, on `root` (empty elsewhere).
  std::vector<std::string> Gather(const std::string& local, int root) const;
  // Every rank's `local` strings concatenated in rank order, on `root` (empty elsewhere).
  std::vector<std::string> GatherStrings(const std::vector<std::string>& local, int root) const;
  // On every rank: every rank's `local` values (or lists) concatenated in rank order. Exact
  // copies, no arithmetic, so the result does not depend on the rank count.
  std::vector<double> AllGather(std::span<const double> local) const;
  std::vector<std::vector<int32_t>> AllGather(const std::vector<std::vector<int32_t>>& local) const;
  // Logical AND over ranks.
  bool AllTrue(bool local) const;
  // Maximum and sum over ranks, on every rank (for statistics, never for results: a sum's
  // rounding would depend on the rank count).
  double AllMax(double local) const;
  double AllSum(double local) const;

  // Bytes this rank has sent point-to-point since construction (activations between stages).
  uint64_t bytes_sent() const { return traffic_->p2p; }
  // Bytes this rank has contributed to collectives since construction, counted as the payload
  // that must leave it: a broadcast root's data once per other rank, a gather's part once (to
  // the root) or once per other rank (allgather, reductions). What the wire carries depends on
  // Open MPI's algorithm; this is the application's traffic, the same for any algorithm.
  uint64_t collective_bytes() const { return traffic_->collective; }

 private:
  Comm(MPI_Comm comm, int rank, int size);
  // The rank a collective with `root` (-1: none) waits for, as far as this rank can tell.
  int CollectivePeer(int root) const;
  struct Traffic {
    uint64_t p2p = 0, collective = 0;
  };
  MPI_Comm comm_ = MPI_COMM_NULL;
  int rank_ = 0, size_ = 1;
  std::shared_ptr<Traffic> traffic_;  // shared by copies: one count per communicator
};

}  // namespace hiq
