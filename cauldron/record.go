package cauldron

// Ref names where a record came from, so that a bad sample found anywhere downstream can be
// traced to one row of one file.
type Ref struct {
	Source string `json:"source"`
	File   string `json:"file"`
	Row    int64  `json:"row"`
}

// Image is one encoded image as stored in the dataset. Bytes is the PNG/JPEG/... file content;
// Path is the name the dataset gave it (HF's Image feature keeps both), possibly empty.
type Image struct {
	Bytes []byte `json:"-"`
	Path  string `json:"path,omitempty"`
}

// Turn is one user question and the assistant's answer, as in The Cauldron's `texts` entries.
type Turn struct {
	User      string `json:"user"`
	Assistant string `json:"assistant"`
	Source    string `json:"source,omitempty"`
}

// Record is one sample. Training sources fill Turns (or Chat, for datasets stored in HF chat
// format); evaluation sources fill ID, Question and Answers, and also a single Turn with the
// first reference answer so that an eval set can be trained on as well.
type Record struct {
	Ref
	Images []Image
	Turns  []Turn
	// Chat is set instead of Turns when the dataset stores HF chat messages itself; its image
	// items refer to Images in order.
	Chat []Message

	ID       string
	Question string
	Answers  []string
}

// ImageBytes is the total size of the encoded images, for throughput counters.
func (r *Record) ImageBytes() int64 {
	var n int64
	for _, im := range r.Images {
		n += int64(len(im.Bytes))
	}
	return n
}
