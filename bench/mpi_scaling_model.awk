# The 8 GPUs/node x 64 nodes model of bench/mpi-scaling.sh, from its measured
# values: t1 (s per CD-1 784 x 500 update of 384 rows on one core), ar (s
# of a 2-rank MPI_Allreduce of the gradient on this machine), ord (s of the
# ordered sum of 6 float64 blocks on 2 ranks), values (floats in the gradient).
function fmt(x) { return sprintf("%.3g", x) }
BEGIN {
  P = 512; per_node = 8; nodes = 64
  bytes = 4 * values
  c_cpu = t1 / 384
  # Assumed, not measured here (no GPU or network in this run): H100-class
  # GPUs at 25 TFLOP/s effective float32 on ~3.9 MFLOP per CD-1 row; NVLink
  # 450 GB/s per GPU within a node; one 400 Gb/s (50 GB/s) NIC per GPU; 5 us
  # per network step and 2 us per NVLink step.
  c_gpu = 3.9e6 / 25e12
  nvlink = 450e9; nic = 50e9; alpha_net = 5e-6; alpha_link = 2e-6
  # Hierarchical ring all-reduce: reduce-scatter in the node, all-reduce of
  # each GPU's 1/8 share across the 64 nodes, all-gather in the node.
  t_in = 2 * (per_node - 1) / per_node * bytes / nvlink + 2 * (per_node - 1) * alpha_link
  t_across = 2 * (nodes - 1) / nodes * (bytes / per_node) / nic + 2 * (nodes - 1) * alpha_net
  t_ar = t_in + t_across
  measured_bw = bytes / ar
  print "Per update, P ranks and batch B: compute c B / P (c: seconds per row), then an all-reduce of the"
  print "n x m + n + m = " values " float gradient (" fmt(bytes / 1e6) " MB), t_ar. Efficiency"
  print "E = (c B / P) / (c B / P + t_ar); the all-reduce dominates when B < P t_ar / c, and E > 80% needs"
  print "B >= 4 P t_ar / c."
  print ""
  print "Measured here: c = " fmt(c_cpu) " s per row on one core (strong-scaling run, 1 rank); the 2-rank"
  print "MPI_Allreduce of the gradient took " fmt(ar) " s (" fmt(measured_bw / 1e9) " GB/s through shared memory)."
  print "Not measured (assumed, see bench/mpi_scaling_model.awk): c on an H100-class GPU = " fmt(c_gpu) " s per"
  print "row; NVLink 450 GB/s and 2 us per step in a node; one 50 GB/s NIC per GPU and 5 us per step across"
  print "nodes. Hierarchical ring all-reduce (reduce-scatter in the node, all-reduce of 1/8 shares across the"
  print "64 nodes, all-gather in the node): t_ar = " fmt(t_in) " s in the node + " fmt(t_across) " s across = " fmt(t_ar) " s,"
  print "dominated by the 126 network steps' latency, not by bandwidth."
  print ""
  print "| compute per row | t_ar | all-reduce dominates below B = | B for E > 80% | B for E > 80% per GPU |"
  print "|---|---:|---:|---:|---:|"
  b_cpu = 4 * P * t_ar / c_cpu; b_gpu = 4 * P * t_ar / c_gpu
  print "| one CPU core (measured), " fmt(c_cpu) " s | " fmt(t_ar) " s | " fmt(P * t_ar / c_cpu) " | " fmt(b_cpu) " | " fmt(b_cpu / P) " |"
  print "| one GPU (assumed), " fmt(c_gpu) " s | " fmt(t_ar) " s | " fmt(P * t_ar / c_gpu) " | " fmt(b_gpu) " | " fmt(b_gpu / P) " |"
  print ""
  print "On GPUs, 512-way data parallelism of one 784 x 500 CD-1 model keeps 80% efficiency only with"
  print "batches of about " fmt(b_gpu) " rows (" fmt(b_gpu / P) " per GPU) per update, far beyond MNIST's 60,000"
  print "rows: at useful batch sizes (100 to 10,000) the all-reduce dominates and the right scale-out for models"
  print "this small is the other one, many runs (studies, ensembles) per GPU. Larger models raise c as n m"
  print "while t_ar stays latency-bound, so the crossover batch falls in proportion."
  print ""
  print "The deterministic reduction marbm uses (every rank receives every 64-row block's float64 statistics"
  print "and sums them in block order, for bit-identical models at any rank count) moves B / 64 blocks of"
  print "8 x " values " bytes per phase instead of one float gradient: its cost grows with B like the"
  print "compute, so its efficiency does not improve with the batch. Measured on 2 loaded ranks: " fmt(ord) " s"
  print "wall for 6 blocks against " fmt(ar) " s for the plain all-reduce. It is the reference for checking, not"
  print "the transport for 512 GPUs: at that scale a plain (reduce-scatter + all-gather) float all-reduce,"
  print "such as NCCL's, whose result depends on the rank count in the last bits, is the one the model above"
  print "describes."
}
