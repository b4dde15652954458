"""Funnels: conversion through ordered, strict or unordered steps (query-engine-semantics §4)."""
