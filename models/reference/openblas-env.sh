# Sourced by the training scripts (needs $WORK). Debian's PyTorch links the reference BLAS (BLAS_INFO=generic,
# ~6 GFLOP/s); OpenBLAS is ~30x faster. Take it from the Debian package without installing it system-wide and put it
# first on LD_LIBRARY_PATH (set OPENBLAS_DIR= to skip).
OPENBLAS_DIR=${OPENBLAS_DIR-$WORK/openblas/usr/lib/x86_64-linux-gnu/openblas-openmp}
if [ -n "$OPENBLAS_DIR" ] && [ ! -e "$OPENBLAS_DIR/libblas.so.3" ]; then
  (cd "$WORK" && apt-get download libopenblas0-openmp && dpkg-deb -x libopenblas0-openmp_*.deb "$WORK/openblas")
fi
if [ -n "$OPENBLAS_DIR" ]; then
  export LD_LIBRARY_PATH="$OPENBLAS_DIR${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
fi
export OMP_WAIT_POLICY=PASSIVE
