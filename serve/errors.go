package serve

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
)

// apiError is a request's failure as the client sees it: an HTTP status and OpenAI's error
// object. TGI's endpoints write the same message in TGI's shape (tgi.go).
type apiError struct {
	Status  int
	Type    string // invalid_request_error, rate_limit_error, server_error, ...
	Param   string // the request field at fault, when there is one
	Code    string
	Message string
	// RetryAfter, when > 0, is sent as Retry-After (seconds) with a 429 or 503.
	RetryAfter int
}

func (e *apiError) Error() string { return e.Message }

// badRequest is a 400 for a request field.
func badRequest(param, format string, args ...any) *apiError {
	return &apiError{Status: http.StatusBadRequest, Type: "invalid_request_error", Param: param, Message: fmt.Sprintf(format, args...)}
}

var (
	errQueueFull = &apiError{Status: http.StatusTooManyRequests, Type: "rate_limit_error", Code: "queue_full",
		Message: "the server's queue is full; retry after the time in Retry-After", RetryAfter: 1}
	errShuttingDown = &apiError{Status: http.StatusServiceUnavailable, Type: "server_error", Code: "shutting_down",
		Message: "the server is shutting down and takes no new requests", RetryAfter: 5}
	errDeadline = &apiError{Status: http.StatusGatewayTimeout, Type: "timeout_error", Code: "deadline_exceeded",
		Message: "the request did not finish within the server's deadline (serve.request_timeout_s)"}
)

// asAPIError turns any error into what the client is told; errors that are not the request's
// fault become a 500 with their text.
func asAPIError(err error) *apiError {
	var ae *apiError
	if errors.As(err, &ae) {
		return ae
	}
	return &apiError{Status: http.StatusInternalServerError, Type: "server_error", Message: err.Error()}
}

// writeError writes OpenAI's error body: {"error": {"message", "type", "param", "code"}}.
func writeError(w http.ResponseWriter, err error) {
	e := asAPIError(err)
	if e.RetryAfter > 0 {
		w.Header().Set("Retry-After", strconv.Itoa(e.RetryAfter))
	}
	body := map[string]any{"message": e.Message, "type": e.Type, "param": nullable(e.Param), "code": nullable(e.Code)}
	writeJSON(w, e.Status, map[string]any{"error": body})
}

func nullable(s string) any {
	if s == "" {
		return nil
	}
	return s
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}
