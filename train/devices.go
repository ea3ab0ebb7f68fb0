package train

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/gomlx/gomlx/pkg/core/distributed"
	"github.com/gomlx/gomlx/pkg/core/tensors"
	"github.com/idefics2/idefics2/model"
)

// meshAxis names the one axis of the data-parallel mesh.
const meshAxis = "data"

// ParseDevices checks a train.devices value: a whole number ≥ 1, or "all" (0 is returned for it).
func ParseDevices(s string) (int, error) {
	s = strings.TrimSpace(s)
	if strings.EqualFold(s, "all") {
		return 0, nil
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 1 {
		return 0, fmt.Errorf("train.devices = %q: must be a whole number ≥ 1 or \"all\"", s)
	}
	return n, nil
}

// ResolveDevices is the device count train.devices asks for on a backend that has available
// devices, and the check that the micro-batch splits evenly over them.
func ResolveDevices(spec string, available, batchSize int) (int, error) {
	n, err := ParseDevices(spec)
	if err != nil {
		return 0, err
	}
	if n == 0 {
		n = available
	}
	if n > available {
		return 0, fmt.Errorf("train.devices = %d: the backend has %d device(s) (for the XLA CPU plugin: GOMLX_BACKEND=xla:/abs/pjrt_c_api_cpu_plugin.so,cpu_device_count=%d)", n, available, n)
	}
	if batchSize%n != 0 {
		return 0, fmt.Errorf("train.batch_size = %d does not split over train.devices = %d: the per-device batch must be whole (make batch_size a multiple of %d)", batchSize, n, n)
	}
	return n, nil
}

// dataParallel is the 1-D mesh a Stepper runs on when it has several devices: the batch axis of
// every [B, T] input is split over it, everything else is replicated unless the optimizer state
// is sharded. The graph stays the single-device one (GoMLX's AutoSharding: XLA's Shardy
// partitioner inserts the collectives), so the gradient is summed over the whole global batch
// inside the graph and the optimizer step sees the same numbers on every device.
type dataParallel struct {
	mesh     *distributed.DeviceMesh
	n        int
	rows     *distributed.ShardingSpec // [B, T] tensors: rows split over the mesh
	repl     *distributed.ShardingSpec
	shardOpt bool
}

func newDataParallel(n int, shardOpt bool) (*dataParallel, error) {
	mesh, err := distributed.NewDeviceMesh([]int{n}, []string{meshAxis})
	if err != nil {
		return nil, err
	}
	rows, err := distributed.NewShardingSpec(mesh, distributed.AxisSpec{meshAxis}, distributed.ReplicatedAxis)
	if err != nil {
		return nil, err
	}
	return &dataParallel{mesh: mesh, n: n, rows: rows, repl: distributed.NewReplicatedShardingSpec(mesh), shardOpt: shardOpt}, nil
}

// inputSpecs are the sharding specs of a step's inputs in Batch.Tensors order, then the
// scalars after them (the last spec repeats for those). Text tensors [B, T] split by rows. The
// images [M, …] split by image when splitImages (M divides by the device count: each device
// runs the vision tower on its share, and XLA gathers the image features the rows ask for);
// otherwise every device holds them all, since M counts a batch's images, not its rows.
func (d *dataParallel) inputSpecs(splitImages bool) []*distributed.ShardingSpec {
	r, b := d.repl, d.rows
	pixels, perImage := r, r
	if splitImages {
		pixels, perImage = d.firstAxis(4), d.firstAxis(2)
	}
	// input_ids, attention_mask, position_ids, targets, pixels, patch_mask, vision_position_ids, image_row, then scalars.
	return []*distributed.ShardingSpec{b, b, b, b, pixels, perImage, perImage, b, r}
}

// splitsImages reports whether a batch's images split evenly over the mesh.
func (d *dataParallel) splitsImages(b *model.Batch) bool {
	return b.M > 0 && b.M%d.n == 0
}

// firstAxis is the spec of a tensor of rank whose first axis splits over the mesh.
func (d *dataParallel) firstAxis(rank int) *distributed.ShardingSpec {
	axes := make([]distributed.AxisSpec, rank)
	axes[0] = distributed.AxisSpec{meshAxis}
	spec, err := distributed.NewShardingSpec(d.mesh, axes...)
	if err != nil {
		panic(err) // the mesh has the axis: cannot happen
	}
	return spec
}

// args lays out a step's inputs for GoMLX's distributed Exec: device-major, each device's shard
// of every input in order, then the scalars. ins are Batch.Tensors.
func (d *dataParallel) args(ins []*tensors.Tensor, splitImages bool, scalars []any) ([]any, error) {
	specs := d.inputSpecs(splitImages)
	shards := make([][]*tensors.Tensor, len(ins))
	for i, t := range ins {
		// A replicated input is copied too: a host tensor goes to one device only.
		spec := specs[min(i, len(specs)-1)]
		dt, err := distributed.ShardTensor(spec, t)
		if err != nil {
			return nil, err
		}
		shards[i] = dt.Shards()
	}
	out := make([]any, 0, d.n*(len(ins)+len(scalars)))
	for dev := range d.n {
		for i := range ins {
			out = append(out, shards[i][dev])
		}
		out = append(out, scalars...)
	}
	return out, nil
}

// checkBatch refuses a micro-batch whose rows do not split over the mesh.
func (d *dataParallel) checkBatch(b *model.Batch) error {
	if b.B%d.n != 0 {
		return fmt.Errorf("train: a batch of %d rows does not split over %d devices (train.devices): use a batch_size that is a multiple of %d and max_steps within the data, or train.devices=1", b.B, d.n, d.n)
	}
	return nil
}

// optimizerSpec is the sharding of a trained tensor's float32 master and AdamW moments with
// train.shard_optimizer: split along its first axis that divides by the device count (a LoRA
// A [in, r] by rows, B [r, out] by columns when r does not divide), replicated when none does.
func (d *dataParallel) optimizerSpec(dims []int) *distributed.ShardingSpec {
	for i, n := range dims {
		if n%d.n == 0 && n >= d.n {
			axes := make([]distributed.AxisSpec, len(dims))
			axes[i] = distributed.AxisSpec{meshAxis}
			spec, err := distributed.NewShardingSpec(d.mesh, axes...)
			if err == nil {
				return spec
			}
		}
	}
	return d.repl
}

// setupDevices spreads the step over train.devices devices (checked against the backend and
// the batch size).
func (r *recipe) setupDevices() error {
	n, err := ResolveDevices(r.cfg.Train.Devices, r.be.NumDevices(), r.cfg.Train.BatchSize)
	if err != nil {
		return err
	}
	if n > 1 {
		r.log.Info("data-parallel", "devices", n, "per_device_batch", r.cfg.Train.BatchSize/n, "shard_optimizer", r.cfg.Train.ShardOptimizer)
	}
	return r.st.UseDevices(n, r.cfg.Train.ShardOptimizer)
}
