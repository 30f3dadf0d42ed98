"""Synthetic populations: persons in households, organisations, friendships and identifiers."""

from credsim.population.generate import generate_population
from credsim.population.types import ORGANIZATION, PERSON, Population

__all__ = ["ORGANIZATION", "PERSON", "Population", "generate_population"]
