package model

import (
	"encoding/json"
	"fmt"
	"os"
)

// GenerationConfig is the part of HF's GenerationConfig that Generate implements. Zero values
// are not defaults: start from DefaultGenerationConfig (idefics2-8b's generation_config.json
// plus HF's global defaults) or LoadGenerationConfig.
type GenerationConfig struct {
	MaxNewTokens int     `json:"max_new_tokens"`
	EOSTokenIDs  []int   `json:"eos_token_id"`  // a row stops after emitting any of them
	PadTokenID   int     `json:"pad_token_id"`  // fills a row after it stopped
	BadWordsIDs  [][]int `json:"bad_words_ids"` // token sequences never to complete

	DoSample          bool    `json:"do_sample"`          // false: greedy
	Temperature       float64 `json:"temperature"`        // 1 = off
	TopK              int     `json:"top_k"`              // 0 = off
	TopP              float64 `json:"top_p"`              // 1 = off
	RepetitionPenalty float64 `json:"repetition_penalty"` // 1 = off (applies to greedy too)
	Seed              uint64  `json:"seed"`               // sampling only
}

// DefaultGenerationConfig is what HF's generate does for idefics2-8b without arguments but
// max_new_tokens: eos {2, 32002}, bad words <fake_token_around_image> and <image>, pad 0,
// greedy; the sampling knobs take HF's global defaults (temperature 1, top_k 50, top_p 1).
func DefaultGenerationConfig() GenerationConfig {
	return GenerationConfig{
		MaxNewTokens: 512, EOSTokenIDs: []int{2, 32002}, PadTokenID: 0, BadWordsIDs: [][]int{{32000}, {32001}},
		Temperature: 1, TopK: 50, TopP: 1, RepetitionPenalty: 1,
	}
}

// rawGenerationConfig accepts both HF spellings of eos_token_id (an int or a list).
type rawGenerationConfig struct {
	MaxNewTokens      *int            `json:"max_new_tokens"`
	EOSTokenID        json.RawMessage `json:"eos_token_id"`
	PadTokenID        *int            `json:"pad_token_id"`
	BadWordsIDs       *[][]int        `json:"bad_words_ids"`
	DoSample          *bool           `json:"do_sample"`
	Temperature       *float64        `json:"temperature"`
	TopK              *int            `json:"top_k"`
	TopP              *float64        `json:"top_p"`
	RepetitionPenalty *float64        `json:"repetition_penalty"`
}

// ParseGenerationConfig overlays an HF generation_config.json on base: keys present in the file
// replace base's values, absent keys keep them.
func ParseGenerationConfig(data []byte, base GenerationConfig) (GenerationConfig, error) {
	var raw rawGenerationConfig
	if err := json.Unmarshal(data, &raw); err != nil {
		return base, err
	}
	c := base
	if raw.MaxNewTokens != nil {
		c.MaxNewTokens = *raw.MaxNewTokens
	}
	if len(raw.EOSTokenID) > 0 && string(raw.EOSTokenID) != "null" {
		var one int
		var many []int
		if err := json.Unmarshal(raw.EOSTokenID, &one); err == nil {
			c.EOSTokenIDs = []int{one}
		} else if err := json.Unmarshal(raw.EOSTokenID, &many); err == nil {
			c.EOSTokenIDs = many
		} else {
			return base, fmt.Errorf("eos_token_id: want an int or a list of ints, got %s", raw.EOSTokenID)
		}
	}
	if raw.PadTokenID != nil {
		c.PadTokenID = *raw.PadTokenID
	} else if len(raw.EOSTokenID) > 0 && len(c.EOSTokenIDs) > 0 {
		c.PadTokenID = c.EOSTokenIDs[0] // HF pads with the first eos when there is no pad token
	}
	if raw.BadWordsIDs != nil {
		c.BadWordsIDs = *raw.BadWordsIDs
	}
	if raw.DoSample != nil {
		c.DoSample = *raw.DoSample
	}
	if raw.Temperature != nil {
		c.Temperature = *raw.Temperature
	}
	if raw.TopK != nil {
		c.TopK = *raw.TopK
	}
	if raw.TopP != nil {
		c.TopP = *raw.TopP
	}
	if raw.RepetitionPenalty != nil {
		c.RepetitionPenalty = *raw.RepetitionPenalty
	}
	return c, c.Validate()
}

// LoadGenerationConfig reads a generation_config.json over base.
func LoadGenerationConfig(path string, base GenerationConfig) (GenerationConfig, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return base, err
	}
	c, err := ParseGenerationConfig(data, base)
	if err != nil {
		return base, fmt.Errorf("%s: %w", path, err)
	}
	return c, nil
}

// Validate rejects settings HF would reject or that cannot generate.
func (c GenerationConfig) Validate() error {
	switch {
	case c.MaxNewTokens < 1:
		return fmt.Errorf("max_new_tokens must be at least 1, got %d", c.MaxNewTokens)
	case c.DoSample && c.Temperature <= 0:
		return fmt.Errorf("temperature must be > 0 when sampling, got %g (use greedy decoding instead)", c.Temperature)
	case c.TopK < 0:
		return fmt.Errorf("top_k must be ≥ 0, got %d", c.TopK)
	case c.TopP <= 0 || c.TopP > 1:
		return fmt.Errorf("top_p must be in (0, 1], got %g", c.TopP)
	case c.RepetitionPenalty <= 0:
		return fmt.Errorf("repetition_penalty must be > 0, got %g", c.RepetitionPenalty)
	}
	for _, w := range c.BadWordsIDs {
		if len(w) == 0 {
			return fmt.Errorf("bad_words_ids has an empty sequence")
		}
	}
	return nil
}
