"""The online learner: DriftMoE trees and router that adapt routing to streaming feedback."""
