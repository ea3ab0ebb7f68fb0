package serve

import (
	"fmt"
	"path/filepath"
	"time"

	"github.com/idefics2/idefics2/data"
	"github.com/idefics2/idefics2/model"
	"github.com/idefics2/idefics2/session"
)

// servedModel is one name a request can ask for: the base model or the base with one adapter.
// An adapter's model is a sibling of the base (model.Sibling): the base weights are held once,
// each adapter adds its own tensors; every model shares the tokenizer, the processor and the
// backend.
type servedModel struct {
	Name      string
	Adapter   string // adapter directory; "" for the base
	Parent    string // the base model's name, for an adapter
	Created   int64
	Generator *model.Generator
	Config    model.Config
}

// Models is the loaded set: the session of the base and one model per adapter.
type Models struct {
	Session    *session.Session
	Generation model.GenerationConfig
	list       []*servedModel
	byName     map[string]*servedModel
	procs      map[bool]*data.Processor
	splitting  bool
}

// LoadModels opens the base model named by o (its adapter field must be empty) and each adapter
// of so.Adapters beside it.
func LoadModels(o session.Options, so Options) (*Models, error) {
	if o.Adapter != "" {
		return nil, fmt.Errorf("model.adapter = %q: the server names its adapters; use --adapter NAME=DIR (serve.adapters)", o.Adapter)
	}
	pairs, err := so.adapterPairs()
	if err != nil {
		return nil, err
	}
	s, err := session.Load(o)
	if err != nil {
		return nil, err
	}
	name := so.Name
	if name == "" {
		name = filepath.Base(filepath.Clean(o.Path))
	}
	now := time.Now().Unix()
	ms := &Models{Session: s, Generation: s.Generation, byName: map[string]*servedModel{}, procs: map[bool]*data.Processor{}}
	ms.add(&servedModel{Name: name, Created: now, Generator: s.Generator, Config: s.Model.Config})
	for _, p := range pairs {
		if _, dup := ms.byName[p[0]]; dup {
			s.Close()
			return nil, fmt.Errorf("serve.adapters: %q is the base model's name too; pick another", p[0])
		}
		m := s.Model.Sibling()
		if _, err := session.LoadAdapter(m, p[1]); err != nil {
			s.Close()
			return nil, fmt.Errorf("adapter %s: %w", p[0], err)
		}
		gen, err := model.NewGenerator(m, s.Generator.Backend)
		if err != nil {
			s.Close()
			return nil, err
		}
		ms.add(&servedModel{Name: p[0], Adapter: p[1], Parent: name, Created: now, Generator: gen, Config: m.Config})
	}
	ms.splitting = s.Images.DoImageSplitting
	switch so.Splitting {
	case "on":
		ms.splitting = true
	case "off":
		ms.splitting = false
	}
	proc, err := s.Processor(ms.splitting)
	if err != nil {
		s.Close()
		return nil, err
	}
	ms.procs[ms.splitting] = proc
	return ms, nil
}

func (ms *Models) add(m *servedModel) {
	ms.list = append(ms.list, m)
	ms.byName[m.Name] = m
}

// lookup finds the model a request names; "" is the base.
func (ms *Models) lookup(name string) (*servedModel, error) {
	if name == "" {
		return ms.list[0], nil
	}
	if m, ok := ms.byName[name]; ok {
		return m, nil
	}
	names := make([]string, len(ms.list))
	for i, m := range ms.list {
		names[i] = m.Name
	}
	return nil, &apiError{Status: 400, Type: "invalid_request_error", Param: "model", Code: "model_not_found",
		Message: fmt.Sprintf("model %q is not served here; available: %q", truncate(name, 60), names)}
}

// processor is the one processor of the server (image splitting as configured).
func (ms *Models) processor() *data.Processor { return ms.procs[ms.splitting] }

// Close releases the tokenizer.
func (ms *Models) Close() { ms.Session.Close() }

// Names are the served model ids, the base first.
func (ms *Models) Names() []string {
	out := make([]string, len(ms.list))
	for i, m := range ms.list {
		out[i] = m.Name
	}
	return out
}
