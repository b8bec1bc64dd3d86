// Package fuzz holds fuzz targets for inputs that have no protocol package
// of their own (the config file), and run.sh, which runs every fuzz target
// in the module for a set time.
package fuzz
