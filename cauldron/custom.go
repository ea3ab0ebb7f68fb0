package cauldron

import (
	"path/filepath"
	"strings"

	"github.com/apache/arrow-go/v18/arrow"
)

// Columns names the columns of a custom dataset. Empty names are guessed from the file:
// images from the HF Image feature in the file's metadata, else "images" or "image"; then "messages" (HF chat format), "texts" (Cauldron style)
// or "question" with "answer"/"answers".
type Columns struct {
	// Images holds HF Image structs (or a list of them), a path or a list of paths relative to
	// the data file, or raw bytes.
	Images string `json:"images,omitempty" mapstructure:"images"`
	// Messages holds HF chat messages: list<struct<role, content>> whose content is a string or
	// a list of {type, text}, or a JSON string of the same.
	Messages string `json:"messages,omitempty" mapstructure:"messages"`
	// Texts holds Cauldron-style list<struct<user, assistant>>.
	Texts string `json:"texts,omitempty" mapstructure:"texts"`
	// Question and Answer hold one question and its answer (a string, or a list of reference
	// answers of which the first is trained on).
	Question string `json:"question,omitempty" mapstructure:"question"`
	Answer   string `json:"answer,omitempty" mapstructure:"answer"`
	// ID is an optional string or integer id, kept for predictions files.
	ID string `json:"id,omitempty" mapstructure:"id"`
}

// CustomLayout reads a dataset with named columns.
type CustomLayout struct {
	Label string
	Columns
	// AllowNoImages accepts text-only rows (e.g. the text-only sets mixed into SFT).
	AllowNoImages bool
	// Eval accepts rows without answers (hidden test answers) and keeps every reference answer.
	Eval bool
}

// DocVQA is lmms-lab/DocVQA (config DocVQA or InfographicVQA): questionId, question, image,
// answers (null on the test split, whose answers are hidden).
var DocVQA Layout = CustomLayout{Label: "lmms-lab/DocVQA", Eval: true,
	Columns: Columns{Images: "image", Question: "question", Answer: "answers", ID: "questionId"}}

// TextVQA is lmms-lab/textvqa: question_id (int32), question, image, answers (10 strings).
var TextVQA Layout = CustomLayout{Label: "lmms-lab/textvqa", Eval: true,
	Columns: Columns{Images: "image", Question: "question", Answer: "answers", ID: "question_id"}}

func (l CustomLayout) Name() string {
	if l.Label != "" {
		return l.Label
	}
	return "custom"
}

func (l CustomLayout) Expected() string {
	c := l.Columns
	var parts []string
	add := func(name, what string) {
		if name != "" {
			parts = append(parts, name+": "+what)
		}
	}
	add(c.ID, "string or integer")
	add(c.Images, imageShapes)
	add(c.Messages, "list<struct<role: string, content: string | list<struct<type: string, text: string>>>> or JSON string")
	add(c.Texts, "list<struct<user: string, assistant: string>>")
	add(c.Question, "string")
	add(c.Answer, "string or list<string>")
	if len(parts) == 0 {
		return "{images or image, and messages, texts or question+answer}"
	}
	return "{" + strings.Join(parts, ", ") + "}"
}

// resolve fills empty column names from what the file has.
func (c Columns) resolve(has func(string) bool) Columns {
	pick := func(cur string, names ...string) string {
		if cur != "" {
			return cur
		}
		for _, n := range names {
			if has(n) {
				return n
			}
		}
		return ""
	}
	c.Images = pick(c.Images, "images", "image")
	if c.Messages == "" && c.Texts == "" && c.Question == "" {
		c.Messages = pick("", "messages", "conversations")
		if c.Messages == "" {
			c.Texts = pick("", "texts")
		}
		if c.Messages == "" && c.Texts == "" {
			c.Question = pick("", "question", "query")
		}
	}
	if c.Question != "" {
		c.Answer = pick(c.Answer, "answer", "answers")
	}
	c.ID = pick(c.ID, "id")
	return c
}

func (l CustomLayout) bind(sc *arrow.Schema, file string) (*binding, error) {
	c := l.Columns
	if c.Images == "" {
		c.Images = hfImageColumn(sc) // the datasets Image feature, whatever the column's name
	}
	c = c.resolve(func(n string) bool { _, ok := fieldType(sc, n); return ok })
	l.Columns = c
	var cols []string
	var steps []func(cols []arrow.Array, i int, rec *Record) error
	use := func(name string, f func(a arrow.Array, i int, rec *Record) error) {
		k := len(cols)
		cols = append(cols, name)
		steps = append(steps, func(all []arrow.Array, i int, rec *Record) error { return f(all[k], i, rec) })
	}
	col := func(name string) (arrow.DataType, error) {
		dt, ok := fieldType(sc, name)
		if !ok {
			return nil, schemaErr(l, file, sc, "column %q is missing", name)
		}
		return dt, nil
	}

	if c.Images != "" {
		dt, err := col(c.Images)
		if err != nil {
			return nil, err
		}
		ic, ok := newImageColumn(c.Images, dt, filepath.Dir(file))
		if !ok {
			return nil, schemaErr(l, file, sc, "column %q is %s", c.Images, typeString(dt))
		}
		use(c.Images, func(a arrow.Array, i int, rec *Record) (err error) {
			rec.Images, err = ic.read(a, i)
			return err
		})
	} else if !l.AllowNoImages {
		return nil, schemaErr(l, file, sc, "no image column (set Columns.Images, or AllowNoImages for text-only data)")
	}

	switch {
	case c.Messages != "":
		dt, err := col(c.Messages)
		if err != nil {
			return nil, err
		}
		read, ok := messagesReader(c.Messages, dt)
		if !ok {
			return nil, schemaErr(l, file, sc, "column %q is %s", c.Messages, typeString(dt))
		}
		use(c.Messages, func(a arrow.Array, i int, rec *Record) (err error) {
			rec.Chat, err = read(a, i)
			return err
		})
	case c.Texts != "":
		read, err := bindTexts(l, sc, file, c.Texts)
		if err != nil {
			return nil, err
		}
		use(c.Texts, func(a arrow.Array, i int, rec *Record) (err error) {
			rec.Turns, err = read(a, i)
			return err
		})
	case c.Question != "":
		qt, err := col(c.Question)
		if err != nil {
			return nil, err
		}
		if !isText(qt) {
			return nil, schemaErr(l, file, sc, "column %q is %s", c.Question, typeString(qt))
		}
		use(c.Question, func(a arrow.Array, i int, rec *Record) error {
			q, ok := textAt(a, i)
			if !ok {
				return skipf(ReasonNullField, "column %q is null", c.Question)
			}
			if strings.TrimSpace(q) == "" {
				return skipf(ReasonEmptyField, "column %q is empty", c.Question)
			}
			rec.Question = q
			return nil
		})
		if c.Answer != "" {
			at, err := col(c.Answer)
			if err != nil {
				return nil, err
			}
			if !isText(at) && !textListOK(at) {
				return nil, schemaErr(l, file, sc, "column %q is %s", c.Answer, typeString(at))
			}
			use(c.Answer, func(a arrow.Array, i int, rec *Record) error {
				var answers []string
				if isText(at) {
					if s, ok := textAt(a, i); ok {
						answers = []string{s}
					}
				} else {
					answers, _ = textsAt(a, i)
				}
				rec.Answers = answers
				return nil
			})
		} else if !l.Eval {
			return nil, schemaErr(l, file, sc, "no answer column for question %q", c.Question)
		}
	default:
		return nil, schemaErr(l, file, sc, "no text columns (messages, texts or question)")
	}

	if c.ID != "" {
		dt, err := col(c.ID)
		if err != nil {
			return nil, err
		}
		if !isText(dt) && !isInteger(dt) {
			return nil, schemaErr(l, file, sc, "column %q is %s", c.ID, typeString(dt))
		}
		use(c.ID, func(a arrow.Array, i int, rec *Record) error {
			rec.ID, _ = idAt(a, i)
			return nil
		})
	}

	return &binding{columns: cols, decode: func(all []arrow.Array, i int, rec *Record) error {
		for _, step := range steps {
			if err := step(all, i, rec); err != nil {
				return err
			}
		}
		return l.finish(rec)
	}}, nil
}

// finish turns a question/answers row into a trainable turn and applies the shared checks.
func (l CustomLayout) finish(rec *Record) error {
	if rec.Question != "" {
		if len(rec.Answers) == 0 || rec.Answers[0] == "" {
			if !l.Eval {
				return skipf(ReasonNullField, "answer is null or empty")
			}
		} else {
			rec.Turns = []Turn{{User: rec.Question, Assistant: rec.Answers[0]}}
		}
	}
	return checkRecord(rec, l.AllowNoImages)
}
