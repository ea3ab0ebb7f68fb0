//go:build !cgo

package data

func resizeBilinear(src *Image, w, h int) *Image { return resizeBilinearGo(src, w, h) }
